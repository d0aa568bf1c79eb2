"""One reader of what the iptables tools print: ``iptables-save -t nat`` and
``iptables -t nat -S [chain]``, as a ``Table`` of ``Rule`` lines.

Every iptables feature reads the nat table through it; what the rules mean is the
feature's business.
"""

from __future__ import annotations

from cnilib.ip import parse_cidr


def canonical(tokens: list[str]) -> tuple[str, ...]:
    """Tokens with addresses after -s/-d in our text form, for comparing rules."""
    out = list(tokens)
    for i in range(len(out) - 1):
        if out[i] in ("-s", "-d"):
            try:
                out[i + 1] = str(parse_cidr(out[i + 1]).masked())
            except ValueError:
                pass
    return tuple(out)


def split(line: str) -> list[str]:
    """Tokens of one iptables-save line (double quotes group, backslash escapes)."""
    out: list[str] = []
    cur: list[str] = []
    quoted = esc = started = False
    for ch in line:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\":
            esc = started = True
        elif ch == '"':
            quoted, started = not quoted, True
        elif ch in " \t" and not quoted:
            if started:
                out.append("".join(cur))
                cur, started = [], False
        else:
            cur.append(ch)
            started = True
    if started:
        out.append("".join(cur))
    return out


class Rule:
    """One ``-A`` line of iptables-save: its chain, comment, jump target, text."""

    __slots__ = ("chain", "comment", "target", "line", "tokens")

    def __init__(self, line: str) -> None:
        self.line = line
        self.tokens = split(line)
        self.chain = self.tokens[1] if len(self.tokens) > 1 else ""
        self.comment = self.after("--comment")
        self.target = self.after("-j")

    def after(self, flag: str) -> str:
        """The token after ``flag`` ("" when absent)."""
        t = self.tokens
        return t[t.index(flag) + 1] if flag in t and t.index(flag) + 1 < len(t) else ""


class Table:
    """The nat table of one family (or the chains of it that were listed): the chains
    declared and the rules, in order."""

    __slots__ = ("chains", "rules")

    def __init__(self, chains: set[str], rules: list[Rule]) -> None:
        self.chains = chains
        self.rules = rules


def parse_save(text: str, only: str = "") -> Table:
    """The nat table from ``iptables-save -t nat`` or ``iptables -t nat -S [chain]`` output
    (``:CHAIN``/``-N CHAIN`` declare chains, ``-A`` lines are rules). With ``only``, rules
    whose text lacks it are skipped untokenized (an owner needs only lines naming its chain;
    tokenizing 1,000 lines costs ~10 ms)."""
    chains: set[str] = set()
    rules: list[Rule] = []
    in_nat = True
    for line in text.splitlines():
        if line.startswith("*"):
            in_nat = line == "*nat"
        elif in_nat and line.startswith(":"):
            chains.add(line[1:].split(" ", 1)[0])
        elif in_nat and line.startswith("-N "):
            chains.add(line[3:].strip())
        elif in_nat and line.startswith("-A ") and only in line:
            rules.append(Rule(line))
    return Table(chains, rules)
