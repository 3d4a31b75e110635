"""The policy may only name codes the vocabulary has; checked at start so a typo stops the hub loudly."""

from __future__ import annotations

from hub.domain.policy import Policy
from hub.domain.vocabulary import Vocabulary
from hub.services.codes import SYSTEMS


class PolicyVocabularyError(ValueError):
    pass


def check_policy_codes(policy: Policy, vocabulary: Vocabulary) -> None:
    for system, codes in policy.referenced_codes().items():
        unknown = sorted(codes - vocabulary.codes(SYSTEMS[system]))
        if unknown:
            raise PolicyVocabularyError(f"the policy names unknown {system} codes: {', '.join(unknown)}")
