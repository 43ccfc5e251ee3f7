"""Name rules for tools, prompts and resources: deny > confirm > allow > default.

Globs are fnmatch patterns matched case-sensitively (``fnmatchcase``), so ``Delete_File`` is not
covered by ``delete_*``; write both when a server's names vary in case. Each rule list is compiled
into one regular expression and decisions are cached per name.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Final, Literal

from portcullis.gateway.pipeline import Allow, Confirm, Deny, Verdict
from portcullis.policy.compiled import Rules

__all__ = ["IDENTITY_RULE", "LayeredRules", "RuleSet"]

Subject = Literal["tool", "prompt", "resource"]
_KEY = {"tool": "tools", "prompt": "prompts", "resource": "resources"}


def _compile(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns), re.DOTALL)


class RuleSet:
    """A compiled ``tools:``/``prompts:``/``resources:`` block of one server."""

    __slots__ = ("_cache", "_lists", "_remember", "_subject", "rules", "server")

    def __init__(self, rules: Rules, subject: Subject, server: str) -> None:
        self.rules = rules
        self.server = server
        self._subject = subject
        self._lists = [
            (action, _compile(getattr(rules, action)), getattr(rules, action))
            for action in ("deny", "confirm", "allow")
        ]
        self._cache: dict[str, Verdict] = {}
        self._remember = _compile(rules.remember)

    def remembers(self, name: str) -> bool:
        """Whether an approval for ``name`` may cover the rest of the session (``remember:``)."""
        return self._remember is not None and self._remember.fullmatch(name) is not None

    def decide(self, name: str) -> Verdict:
        """Return the verdict for one tool name, prompt name or resource URI."""
        verdict = self._cache.get(name)
        if verdict is None:
            verdict = self._decide(name)
            if len(self._cache) < 4096:
                self._cache[name] = verdict
        return verdict

    def _decide(self, name: str) -> Verdict:
        key = _KEY[self._subject]
        what = f'{self._subject} "{name}"'
        where = f'the policy for server "{self.server}"'
        for action, regex, patterns in self._lists:
            if regex is None or regex.fullmatch(name) is None:
                continue
            pattern = next(p for p in patterns if fnmatch.fnmatchcase(name, p))
            rule = f"{key}.{action}"
            if action == "deny":
                return Deny(rule, f'{what} matches the deny pattern "{pattern}" in {where}')
            if action == "confirm":
                return Confirm(rule, f'{what} matches the confirm pattern "{pattern}" in {where}')
            return Allow(rule, f'{what} matches the allow pattern "{pattern}"')
        rule = f"{key}.default"
        default = self.rules.default
        if default == "deny":
            return Deny(
                rule, f"{what} is not in the allow list of {where}, and its default is deny"
            )
        if default == "confirm":
            return Confirm(rule, f"{what} is not listed in {where}; its default is confirm")
        return Allow(rule, f"{what} is allowed by the default of {where}")


_STRICTNESS = {"allow": 0, "confirm": 1, "deny": 2}
# The prefix of a rule id decided by an identity's layer rather than the server's rules.
IDENTITY_RULE: Final = "identity."


class LayeredRules:
    """A server's rules with a principal's rules on top: the strictest verdict wins.

    ``portcullis serve`` adds the rules of every identity that applies to the caller; deny
    beats confirm beats allow whichever layer says it. Names are matched as the server knows
    them and as ``server__name``, so an identity can write either form.
    """

    __slots__ = ("_cache", "_layers", "base", "rules", "server")

    def __init__(self, base: RuleSet, layers: list[RuleSet]) -> None:
        self.base = base
        self.server = base.server
        self._layers = layers
        self._cache: dict[str, Verdict] = {}
        # What `_can_hide` reads: anything a layer may refuse makes list results worth reading.
        hides = any(r.rules.default == "deny" or r.rules.deny for r in layers)
        self.rules = base.rules if not hides else Rules("deny", deny=("*",))

    def remembers(self, name: str) -> bool:
        """Session-wide approvals only where the server's own ``remember`` allows them."""
        return self.base.remembers(name)

    def decide(self, name: str) -> Verdict:
        """The strictest verdict of the server's rules and every layer."""
        verdict = self._cache.get(name)
        if verdict is not None:
            return verdict
        verdict = self.base.decide(name)
        qualified = f"{self.server}__{name}"
        for layer in self._layers:
            # A pattern matching either form of the name counts; the layer's default applies
            # only when neither form matches any of its patterns.
            forms = (layer.decide(name), layer.decide(qualified))
            listed = [v for v in forms if not v.rule.endswith(".default")]
            candidate = max(listed, key=lambda v: _STRICTNESS[v.decision]) if listed else forms[0]
            if _STRICTNESS[candidate.decision] > _STRICTNESS[verdict.decision]:
                # Named apart from the server's own rules: an identity's refusal is access
                # control, enforced even while the server's policy is only observed.
                verdict = type(candidate)(f"{IDENTITY_RULE}{candidate.rule}", candidate.reason)
        if len(self._cache) < 4096:
            self._cache[name] = verdict
        return verdict
