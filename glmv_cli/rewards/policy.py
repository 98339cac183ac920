"""The anti-hacking policy of the math/STEM verifiers: hedges, relation spellings, malformed answers.

A *hedge* is a marker of a range, an alternative or an approximation ("between", "or", "≈",
"\\pm", "…"). A prediction that uses a hedge its reference does not use earns 0, so a policy
cannot collect reward by answering "3 or 4" or "\\approx 11". Markers are matched as tokens:

* words only where no letter or backslash touches them, so ``\\to`` in ``\\lim_{x \\to 0}`` is a
  LaTeX command, not the word "to", while ``\\text{3 or 4}`` still hedges;
* LaTeX commands only as whole commands, so ``\\left`` is not ``\\le`` and ``\\geqslant`` is ``\\geq``.

Relation symbols are read by meaning: every spelling of "at most" (``\\leq``, ``\\le``, ``<=``,
``≤``, ``\\leqslant``, ``⩽``) and of "at least" is one marker ``le`` (a relation read from the
other side flips ``≤`` into ``≥``), strict ``<``/``>`` are ``lt``, ``\\neq``/``≠`` is ``ne``.
:func:`canonical_relations` rewrites the spellings to ``<=``, ``>=``, ``<``, ``>`` so that
:mod:`glmv_cli.rewards.exact` can compare ``5 \\geq x`` with ``x \\leq 5``.

:func:`malformed` catches answers that math-verify would silently shorten to a number: a
dangling operator (``2 +`` reads as ``2``) or unbalanced brackets.
"""

from __future__ import annotations

import re

_WORDS = ("between", "or", "and", "to", "about", "approx", "approximately", "around", "roughly", "nearly",
          "almost", "maybe", "perhaps", "either", "least", "most", "range", "from", "probably", "possibly",
          "likely", "unknown", "cannot")
# LaTeX command (without the backslash) -> marker; matched only as a whole command name
_COMMANDS = {
    "approx": "approx", "approxeq": "approx", "sim": "approx", "simeq": "approx",
    "pm": "pm", "mp": "pm",
    "le": "le", "leq": "le", "leqslant": "le", "leqq": "le", "ge": "le", "geq": "le", "geqslant": "le",
    "geqq": "le",
    "lt": "lt", "gt": "lt", "ll": "lt", "gg": "lt",
    "ne": "ne", "neq": "ne",
    "ldots": "ellipsis", "cdots": "ellipsis", "dots": "ellipsis", "dotsc": "ellipsis",
}
_SYMBOL_MARK = {"<=": "le", ">=": "le", "=<": "le", "=>": "le", "!=": "ne", "...": "ellipsis", "≈": "approx",
                "≃": "approx", "±": "pm", "∓": "pm", "≤": "le", "≥": "le", "⩽": "le", "⩾": "le", "<": "lt",
                ">": "lt", "≠": "ne", "…": "ellipsis"}


def _alternation(words) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


# one scan finds every marker: a word no letter or backslash touches, a whole LaTeX command, a
# symbol (two-character spellings first, so "<=" is one marker), or "~" before a number ("~5" is
# "about 5"; "5~\text{cm}" is LaTeX's non-breaking space)
_MARKERS = re.compile(
    r"(?<![\\A-Za-z])(?P<word>" + _alternation(_WORDS) + r")(?![A-Za-z])"
    r"|\\(?P<cmd>" + _alternation(_COMMANDS) + r")(?![A-Za-z])"
    r"|(?P<sym>" + _alternation(_SYMBOL_MARK) + r")"
    r"|(?P<tilde>(?<![\w)}\]])~(?=\s*[\d.+\-]))",
    re.IGNORECASE)

_RELATIONS = re.compile(r"\\(?P<cmd>leqslant|leqq|leq|le|geqslant|geqq|geq|ge|lt|gt)(?![A-Za-z])|(?P<sym><=|=<|>=|=>|[≤⩽≥⩾])")
_CANONICAL = {"leqslant": "<=", "leqq": "<=", "leq": "<=", "le": "<=", "geqslant": ">=", "geqq": ">=", "geq": ">=",
              "ge": ">=", "lt": "<", "gt": ">", "<=": "<=", "=<": "<=", ">=": ">=", "=>": ">=", "≤": "<=", "⩽": "<=",
              "≥": ">=", "⩾": ">="}


def hedges(text: str) -> set[str]:
    """The hedge markers in ``text``: lower-cased words ("between", "or", …) and the marker names
    ``approx``, ``pm``, ``le``, ``lt``, ``ne``, ``ellipsis`` for symbols and LaTeX commands."""
    out: set[str] = set()
    for m in _MARKERS.finditer(text):
        kind = m.lastgroup
        if kind == "word":
            out.add(m.group("word").lower())
        elif kind == "cmd":
            if m.group("cmd") in _COMMANDS:  # IGNORECASE matched \Approx too; LaTeX commands are not
                out.add(_COMMANDS[m.group("cmd")])
        elif kind == "sym":
            out.add(_SYMBOL_MARK[m.group("sym")])
        else:
            out.add("approx")
    return out


def is_hedged(pred: str, gold: str | set[str] | frozenset[str]) -> bool:
    """True when ``pred`` uses a hedge marker that the reference (its text, or its marker set
    from :func:`hedges`) does not use."""
    ref = gold if isinstance(gold, (set, frozenset)) else hedges(gold)
    return bool(hedges(pred) - ref)


def canonical_relations(s: str) -> str:
    """Every spelling of ≤, ≥, <, > rewritten as ``<=``, ``>=``, ``<``, ``>``."""
    return _RELATIONS.sub(lambda m: _CANONICAL[m.group("cmd") or m.group("sym")], s)


_TRAILING_OP = re.compile(r"(?<![\^_])(?:[+\-*/=,]|\\cdot|\\times|\\div|\\pm|\\mp)$|\^$")
_LEADING_OP = re.compile(r"^(?:[*/^=,]|\\cdot|\\times|\\div)")


def malformed(answer: str) -> str | None:
    """Why ``answer`` is not a complete expression (a dangling operator, unbalanced brackets), or
    None. ``\\mathbb{Z}^+`` is complete: a sign right after ``^``/``_`` is a superscript."""
    t = re.sub(r"\s+|\\[,;:! ]", "", answer)
    t = t.replace("\\left", "").replace("\\right", "")
    if _TRAILING_OP.search(t):
        return "ends with an operator"
    if _LEADING_OP.search(t):
        return "starts with an operator"
    if t.count("{") != t.count("}"):
        return "unbalanced braces"
    if t.count("(") + t.count("[") != t.count(")") + t.count("]"):
        return "unbalanced brackets"
    return None
