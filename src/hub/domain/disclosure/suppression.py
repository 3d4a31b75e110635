"""The suppression itself: validate a :class:`Table`, hide primary and complementary keys until every
small key is protected, and publish what may be shown (the method in the package docstring)."""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from typing import Final

from hub.domain.disclosure.noise import MAX_NOISE, adjusted
from hub.domain.disclosure.table import (
    DisclosureRules,
    Key,
    ProtectedTable,
    Published,
    SuppressionReason,
    Table,
)
from hub.domain.errors import Explanation, FieldError, InvalidInput

_GROUND: Final = -1


def _check_keys(table: Table) -> None:
    bad = [
        FieldError(f"counts[{key!r}]", "a key is a tuple of strings; a count has integer value and children")
        for key, count in table.counts.items()
        if not isinstance(key, tuple)
        or not all(isinstance(part, str) for part in key)
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in (count.value, count.children))
    ]
    bad += [
        FieldError("sums", "a sum names keys (tuples of strings)") for s in table.sums if not isinstance(s.total, tuple)
    ]
    if bad:
        raise InvalidInput("The table cannot be protected as given.", errors=bad)


class SuppressionProblem:
    """The table as a graph: each sum is a node, each key an edge between the (at most two) sums it is
    in, or between its sum and a free "ground" node. A change of +-1 along a cycle of hidden keys, signs
    propagated so every sum on the way still balances, is a second solution an attacker cannot exclude."""

    def __init__(self, table: Table, rules: DisclosureRules) -> None:
        self.rules = rules
        self.k = rules.k
        self.counts = dict(table.counts)
        self.order = list(table.counts)
        _check_keys(table)
        self.keys = sorted(self.counts)
        self.sums = sorted(table.sums, key=lambda s: (s.total, sorted(s.parts)))
        self.coef: list[dict[Key, int]] = []
        self.in_sums: dict[Key, list[int]] = {key: [] for key in self.keys}
        self.hidden: dict[Key, SuppressionReason] = {}
        self._validate(table)
        if rules.noise:  # from here on every decision and every published value is the adjusted one
            self.counts = {key: adjusted(count) for key, count in self.counts.items()}
        self.ground_edges = [key for key in self.keys if len(self.in_sums[key]) == 1]

    # --------------------------------------------------------------------------------- validation

    def _validate(self, table: Table) -> None:
        errors: list[FieldError] = []
        for key, count in table.counts.items():
            where = f"counts[{key!r}]"
            if count.value < 0 or count.children < 0:
                errors.append(FieldError(where, "counts cannot be negative", "negative"))
            elif count.children > count.value or (count.value > 0) != (count.children > 0):
                errors.append(FieldError(where, "children must be between 1 and value, or both 0", "children"))
            if self.rules.noise and count.value > 0 and count.noise is None:
                errors.append(FieldError(f"{where}.noise", "required while noise is on", "missing"))
            for name, stat in count.statistics.items():
                if not 0 <= stat.children <= count.children or (stat.min_children or self.k) < self.k:
                    errors.append(FieldError(f"{where}.statistics.{name}", "children out of range", "children"))
        for index, total in enumerate(self.sums):
            members = [total.total, *total.parts]
            missing = [key for key in members if key not in self.counts]
            if missing or len(set(members)) != len(members):
                errors.append(FieldError(f"sums[{total.total!r}]", "unknown or repeated keys", "sum-keys"))
                self.coef.append({})
                continue
            self.coef.append({total.total: -1, **{part: 1 for part in sorted(total.parts)}})
            for key in members:
                self.in_sums[key].append(index)
            whole, parts = self.counts[total.total], [self.counts[part] for part in total.parts]
            for attr in ("value", "children"):
                amounts = [getattr(part, attr) for part in parts]
                if not max(amounts, default=0) <= getattr(whole, attr) <= sum(amounts):
                    errors.append(FieldError(f"sums[{total.total!r}].{attr}", "total inconsistent", "sum"))
        errors += [
            FieldError(f"counts[{key!r}]", "a key may be in at most two sums", "linked")
            for key, sums in self.in_sums.items()
            if len(sums) > 2
        ]
        if errors:
            raise InvalidInput("The table cannot be protected as given.", errors=errors)

    # ------------------------------------------------------------------------------- suppression

    def value(self, key: Key) -> int:
        return self.counts[key].value

    def suppress(self) -> None:
        primaries = [key for key in self.keys if 0 < self.counts[key].children < self.k]
        self.hidden = {key: "primary" for key in primaries}
        done: set[Key] = set()  # protected (a cycle of hidden keys stays a cycle), or nothing left to hide
        while True:
            self._line_rules()
            for key in primaries:
                if key in done:
                    continue
                if self._is_protected(key):
                    done.add(key)
                    continue
                if not self._repair(key):
                    done.add(key)
                break
            else:
                return

    def _line_rules(self) -> None:
        changed = True
        while changed:
            changed = False
            for index in range(len(self.sums)):
                members = self.coef[index]
                hidden = [key for key in members if key in self.hidden]
                if hidden and (len(hidden) == 1 or not self._group_ok(index, hidden)):
                    changed |= self._hide_cheapest(index)

    def _group_ok(self, index: int, hidden: list[Key]) -> bool:
        """With the total published, the hidden parts' sum is revealed: it must rest on >= k children."""
        total = self.sums[index].total
        if total in self.hidden:
            return True
        shown = sum(self.counts[key].children for key in self.sums[index].parts if key not in self.hidden)
        at_least = max(self.counts[total].children - shown, *(self.counts[key].children for key in hidden))
        return at_least >= self.k

    def _hide_cheapest(self, index: int) -> bool:
        def cost(key: Key) -> tuple[int, int, int, Key]:
            others = [s for s in self.in_sums[key] if s != index]
            hidden_there = [sum(1 for m in self.coef[s] if m in self.hidden) for s in others]
            # Prefer a key whose other sum has a lone hidden key (fixing it too); avoid starting a new one.
            penalty = 0 if 1 in hidden_there else 2 if 0 in hidden_there else 1
            return (penalty, self.coef[index][key] < 0, self.value(key), key)

        candidates = [key for key in self.coef[index] if key not in self.hidden and self.value(key) > 0]
        if not candidates:
            return False
        self.hidden[min(candidates, key=cost)] = "secondary"
        return True

    def _is_protected(self, key: Key) -> bool:
        return not self.in_sums[key] or any(self._cycle(key, sign, False) is not None for sign in (1, -1))

    def _repair(self, key: Key) -> bool:
        """Hide the cheapest published keys that complete a protecting cycle; False if nothing was hidden."""
        found = [cycle for sign in (1, -1) if (cycle := self._cycle(key, sign, True)) is not None]
        if found and min(found)[1]:
            for member in min(found)[1]:
                self.hidden[member] = "secondary"
            return True
        # Fallback (not expected for 1-D, 2-D and hierarchies): hide the cheapest neighbour and retry.
        neighbours = {m for s in self.in_sums[key] for m in self.coef[s] if m not in self.hidden and self.value(m)}
        if not neighbours:
            return False
        self.hidden[min(neighbours, key=lambda m: (self.value(m), m))] = "secondary"
        return True

    def _other_end(self, key: Key, node: int) -> int:
        sums = self.in_sums[key]
        return _GROUND if len(sums) == 1 else sums[1] if sums[0] == node else sums[0]

    def _cycle(self, start: Key, sign: int, allow_shown: bool) -> tuple[tuple[int, int], list[Key]] | None:
        """The cheapest simple cycle through ``start`` (changed by ``sign``) whose keys are all hidden —
        or, with ``allow_shown``, may be published non-zero keys at the cost of their values. Returns
        ((cost, length), keys to hide) or None. Dijkstra over (sum, incoming balance) states."""
        if self.value(start) + sign < 1:
            return None
        first = self.in_sums[start][0]
        target = self._other_end(start, first)
        State = tuple[int, int]
        begin: State = (first, self.coef[first][start] * sign)
        best: dict[State, tuple[int, int]] = {begin: (0, 0)}
        parent: dict[State, tuple[State, Key]] = {}
        heap: list[tuple[int, int, State]] = [(0, 0, begin)]
        while heap:
            cost, length, state = heapq.heappop(heap)
            if best.get(state, (cost, length)) < (cost, length):
                continue
            node, balance = state
            moves: list[tuple[Key, int]]
            if node == _GROUND:
                moves = [(key, d) for key in self.ground_edges for d in (1, -1)]
            else:
                moves = [(key, -balance * c) for key, c in self.coef[node].items()]
            for key, change in moves:
                if key == start or self.value(key) + change < 1:
                    continue
                if key not in self.hidden and not (allow_shown and self.value(key) > 0):
                    continue
                step = 0 if key in self.hidden else self.value(key)
                nxt = self.in_sums[key][0] if node == _GROUND else self._other_end(key, node)
                if nxt == target:
                    closes = target == _GROUND or (
                        self.coef[target][key] * change + self.coef[target][start] * sign == 0
                    )
                    path = self._path(parent, state, key) if closes else None
                    if path is not None and self._simple(path, target):
                        return (cost + step, length + 1), [k for _, k in path if k not in self.hidden]
                    continue
                if nxt == first:
                    continue
                state2: State = (nxt, 0 if nxt == _GROUND else self.coef[nxt][key] * change)
                if state2 not in best or (cost + step, length + 1) < best[state2]:
                    best[state2] = (cost + step, length + 1)
                    parent[state2] = (state, key)
                    heapq.heappush(heap, (cost + step, length + 1, state2))
        return None

    @staticmethod
    def _path(
        parent: Mapping[tuple[int, int], tuple[tuple[int, int], Key]], last: tuple[int, int], key: Key
    ) -> list[tuple[int, Key]]:
        path = [(last[0], key)]
        state = last
        while state in parent:
            state, via = parent[state]
            path.append((state[0], via))
        return path[::-1]

    @staticmethod
    def _simple(path: list[tuple[int, Key]], target: int) -> bool:
        nodes = [node for node, _ in path]
        keys = [key for _, key in path]
        return len(set(nodes)) == len(nodes) and len(set(keys)) == len(keys) and target not in nodes[1:]

    # ---------------------------------------------------------------------------------- publish

    def publish(self) -> ProtectedTable:
        totals = {s.total for s in self.sums}
        cells: dict[Key, Published] = {}
        shown_totals: dict[Key, Published] = {}
        for key in self.order:
            (shown_totals if key in totals else cells)[key] = self._published(key)
        log = {key: self.hidden[key] for key in self.order if key in self.hidden}
        return ProtectedTable(cells, shown_totals, self._notes(), self.rules, log)

    def _published(self, key: Key) -> Published:
        count = self.counts[key]
        if key in self.hidden:
            return Published(None, {name: None for name in count.statistics})
        rests_on = {name: s.children + (s.noise if self.rules.noise else 0) for name, s in count.statistics.items()}
        stats = {
            name: s.value if rests_on[name] >= (s.min_children or self.k) else None
            for name, s in count.statistics.items()
        }
        return Published(count.value, stats)

    def _notes(self) -> tuple[Explanation, ...]:
        k = self.k
        adjusted_sv, adjusted_en = (" efter justeringen", " after the adjustment") if self.rules.noise else ("", "")
        notes = [
            Explanation(
                "disclosure.threshold",
                f"Värden som{adjusted_sv} bygger på färre än {k} barn visas inte, och inte heller andra värden som "
                "skulle göra det möjligt att räkna fram dem ur summorna.",
                f"Values resting on fewer than {k} children{adjusted_en} are hidden, as are other values that "
                "would let them be worked out from the totals.",
            )
        ]
        if self.rules.noise:
            notes.append(
                Explanation(
                    "disclosure.noise",
                    "Varje antal är en summa av de minsta celler hubben håller, var och en justerad en gång för "
                    f"alla med högst ±{MAX_NOISE}. Samma celler ger alltid samma tal hur frågan än ställs, så "
                    "justeringen kan inte medlas bort; delarna summerar till totalerna.",
                    "Every count is a sum of the finest cells the hub keeps, each adjusted once and for all by "
                    f"at most ±{MAX_NOISE}. The same cells always give the same number however the question "
                    "is asked, so the adjustment cannot be averaged away; parts add up to their totals.",
                )
            )
        if any(count.statistics for count in self.counts.values()):
            notes.append(
                Explanation(
                    "disclosure.statistics",
                    f"Ledtider och andra mått visas bara när de bygger på minst {k} barn.",
                    f"Lead times and other statistics are shown only when based on at least {k} children.",
                )
            )
        return tuple(notes)
