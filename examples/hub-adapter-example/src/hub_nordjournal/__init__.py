"""Example hub adapter: referrals into Nordjournal, a fictional journal system with a REST API."""

from hub_nordjournal.adapter import NordjournalAdapter, NordjournalConfig

__all__ = ["NordjournalAdapter", "NordjournalConfig"]
