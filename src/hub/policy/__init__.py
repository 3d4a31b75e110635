"""The lawful-sharing policy file: the shipped default (``default.yaml``) and :func:`load_policy`.

Reading YAML happens here, at the edge; the model and its rules live in :mod:`hub.domain.policy`.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from hub.domain.policy import Policy
from hub.domain.vocabulary import CODE_SYSTEMS, Vocabulary

__all__ = ["DEFAULT_POLICY_RESOURCE", "PolicyFileError", "PolicyVocabularyError", "check_policy_codes", "load_policy"]

DEFAULT_POLICY_RESOURCE = "default.yaml"
"""The name of the default policy file inside this package."""


class PolicyFileError(ValueError):
    """The policy file cannot be read, is not YAML, or does not validate. The message names the file
    and every invalid field."""


class PolicyVocabularyError(ValueError):
    """The policy names a code the loaded vocabulary does not have; checked at start, so a typo stops the
    hub loudly."""


def _read(path: str | os.PathLike[str] | None) -> tuple[str, str]:
    if path is None:
        source = resources.files("hub.policy").joinpath(DEFAULT_POLICY_RESOURCE)
        return f"hub/policy/{DEFAULT_POLICY_RESOURCE}", source.read_text(encoding="utf-8")
    try:
        return str(path), Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyFileError(f"{path}: cannot read the policy file ({exc.strerror})") from exc


def load_policy(path: str | os.PathLike[str] | None = None) -> Policy:
    """Load and validate a policy file; ``None`` loads the default shipped with the hub.

    Raises :class:`PolicyFileError` naming the file and each invalid field."""
    name, text = _read(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyFileError(f"{name}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise PolicyFileError(f"{name}: the policy must be a mapping of fields")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(policy)'}: {err['msg']}" for err in exc.errors()
        )
        raise PolicyFileError(f"{name}: invalid policy: {problems}") from exc


def check_policy_codes(policy: Policy, vocabulary: Vocabulary) -> None:
    """Raise :class:`PolicyVocabularyError` naming every code the policy mentions that ``vocabulary`` lacks."""
    for system, codes in policy.referenced_codes().items():
        unknown = sorted(codes - vocabulary.codes(CODE_SYSTEMS[system]))
        if unknown:
            raise PolicyVocabularyError(f"the policy names unknown {system} codes: {', '.join(unknown)}")
