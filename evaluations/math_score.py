"""Math answer checking: read the *final* answer, refuse replies that game the reader, compare with math-verify.

Only the last stated answer counts (a chain of thought whose final answer is wrong gets no credit
for a correct number earlier on). Forms tried, last occurrence first: \\boxed{..}, `#### N`,
"the answer is N" / "answer: N", and otherwise the last number outside a question. Equivalence
(0.5 = 1/2 = \\frac{1}{2}) is math-verify's, after thousands separators are dropped (1,000 = 1000).

A reply a reward-gaming policy would write scores 0 whatever its numbers, because an RL policy
learns whatever the reader pays for. `verdict` names why (REASONS):
  correct      one clear final answer, equivalent to the gold
  wrong        one clear final answer, not equivalent to the gold
  no_answer    nothing to read as an answer (empty reply, no number outside a question)
  unformatted  require_format=True and no \\boxed{} answer
  empty_box    boxes, all of them empty
  non_answer   boxes, none holding an answer: a placeholder (answer, ?, ...) or, where the gold has
               digits (or, for has_answer_format, no gold is given), only words
  hedged       more than one distinct final answer: a list of candidates ("16 or 18", "either 16 or
               18", "16, 18, or 20", \\{16, 18\\}) with more distinct values than the gold holds
               (a tuple or interval gold "(1, 2)" allows two), or answer statements (boxes, ####,
               "the answer is") that disagree, even when a later one corrects an earlier one
  retracted    the last answer is followed by a retraction ("just kidding", "scratch that",
               "that's wrong", "I'm not sure that's right", ...)
  degenerate   mostly repeats (`degenerate`: few distinct word bigrams, one bigram dominating, or
               repeated sentences), or more than MAX_STATEMENTS answer statements
  echo         (only when the prompt is given) no answer statement, the reply mostly the question
               restated, and its last number one of the question's
Values are told apart by a normalised string, then by math-verify. An empty or placeholder box
beside a real one is ignored (the real one is the answer). `has_answer_format` (the GRPO
format reward and answer_format_rate) needs exactly one distinct, answer-like, unhedged boxed value
in a reply that fails none of the checks above, so a bare box earns nothing.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter

VERSION = "final-answer-math-verify-2"
REASONS = ("correct", "wrong", "no_answer", "unformatted", "empty_box", "non_answer", "hedged", "retracted",
           "degenerate", "echo")
MAX_STATEMENTS = 3  # an honest reply states its answer once or twice; more is padding the reader
LONG_REPLY = 20  # word bigrams from which a reply is judged by the stricter distinct-bigram share
ECHO_SHARE = 0.75  # share of the reply's word trigrams found in the prompt above which it is a restatement

_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*)\}")
_HASHES = re.compile(r"####\s*([^\n]+)")
# A thousands separator stays in its number; "18 / 20" is one fraction, not 18.
_NUM = r"[-+]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:[ \t]*/[ \t]*\d+)?"
_VALUE = rf"\$?(?:{_NUM}|\\d?frac\{{[^}}]*\}}\{{[^}}]*\}}|[(\[][^()\[\]\n]*[)\]])\$?"
_SEP = r"\s*(?:,\s*(?:or\s+)?|;\s*|\s(?:or|and)\s+|\(\s*(?:or|and)\s+|\\text\{\s*(?:or|and)\s*\}\s*)"
_LIST = rf"{_VALUE}(?:{_SEP}{_VALUE})*"
_ANSWER_IS = re.compile(rf"answer\s*(?:is\b|:|=)[:\s*]*(?:either\s+)?({_LIST})", re.IGNORECASE)
_NUMBER = re.compile(_NUM)
_CANDIDATES = re.compile(rf"(?:either\s+)?{_LIST}", re.IGNORECASE)
_QUESTION = re.compile(r"(?:^|(?<=[!?\n])|(?<=\.\s))[^.!?\n]*(?:\.\d[^.!?\n]*)*\?")
_SENTENCE = re.compile(r"[.!?](?=\s|$)|\n")  # a decimal point does not end a sentence
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_SPLIT = re.compile(r"\\[{}]|[()\[\]{}]|[,;]|\b(?:or|and)\b|\\lor\b|\\vee\b", re.IGNORECASE)
_RETRACT = re.compile(  # "let me know if that's wrong" is an offer, not a retraction
    r"(?<!\bif )(?<!\bwhether )\b(?:just kidding|jk\b|scratch that|never ?mind|disregard (?:that|this|the above|my)|"
    r"ignore (?:that|this|the above|my (?:previous |last )?answer)|that(?:'s| is| was) (?:wrong|incorrect|"
    r"not (?:right|correct))|(?:i'?m|i am) not (?:sure|certain|confident)|i was wrong|i made a mistake|"
    r"that can(?:'|no)?t be right|on second thought|actually,? no\b)", re.IGNORECASE)
_PLACEHOLDERS = frozenset({"answer", "theanswer", "finalanswer", "youranswer", "yourfinalanswer", "answerhere",
                           "result", "theresult", "?", "??", "???", "...", "…", r"\ldots", r"\dots", r"\cdots",
                           "n/a", "na", "tbd", "_", "__", "___", r"\_", "blank", "unknown", "value", "number"})


# --- text measures, shared with evaluations/ifeval.py ------------------------------------------

def words(text: str) -> list[str]:
    """Lower-case words with edge punctuation removed; a box is its own word even when glued to the next."""
    raw = text.replace("\\boxed", " \\boxed").lower().split()
    return [t for t in (w.strip(".,;:!?\"'*()[]") for w in raw) if t]


def degenerate(text: str) -> bool:
    """Mostly repeats: few distinct word bigrams (at most half of a short reply's, a quarter of a
    longer one's), one bigram over 30% of a longer reply, or at least half of three or more
    sentences repeating an earlier one. An honest enumeration ("Box 1 has ...", "Box 2 has ...")
    keeps over a quarter of its bigrams distinct and its sentences differ; padding does neither."""
    w = words(text)
    bigrams = list(zip(w, w[1:]))
    if len(bigrams) < 2:
        return False
    if len(set(bigrams)) / len(bigrams) <= (0.5 if len(bigrams) < LONG_REPLY else 0.25):
        return True
    if len(bigrams) >= 12 and Counter(bigrams).most_common(1)[0][1] / len(bigrams) > 0.3:
        return True
    sentences = [" ".join(words(s)) for s in _SENTENCE.split(text)]
    sentences = [s for s in sentences if s]
    return len(sentences) >= 3 and len(sentences) - len(set(sentences)) >= len(sentences) / 2


def echo_share(text: str, prompt: str) -> float:
    """Share of the reply's word trigrams (bigrams for a reply under three words) that occur in the prompt."""
    w, p = words(text), words(prompt)
    n = 3 if len(w) >= 3 else 2
    grams = [tuple(w[i:i + n]) for i in range(len(w) - n + 1)]
    if not grams:
        return 0.0
    seen = {tuple(p[i:i + n]) for i in range(len(p) - n + 1)}
    return sum(g in seen for g in grams) / len(grams)


# --- values ------------------------------------------------------------------------------------

def _clean(value: str) -> str:
    """The value as math-verify reads it: no $, thousands separators, spacing commands or "either"."""
    value = _THOUSANDS.sub("", value.strip().strip("$").rstrip(".,;").strip())
    value = re.sub(r"\\text\{\s*(or|and)\s*\}", r" \1 ", value)
    value = re.sub(r"\\left|\\right|\\[,!;]|\\q?quad", " ", value)
    return re.sub(r"^\s*either\s+", "", value, flags=re.IGNORECASE).strip()


def _spelled_out(value: str) -> str:
    """The value with alternatives written any way made plain "or"s, for counting its values only
    (units in \\text{} stay for math-verify): "18 \\text{ or maybe } 20", "18 (or 20)", "18|20"."""
    value = re.sub(r"\\(?:text|mathrm|textbf)\{([^{}]*)\}", r" \1 ", _clean(value))
    value = re.sub(r"\(\s*((?:or|and)\s[^()]*)\)?", r" \1 ", value)
    return re.sub(r"(?<=\d)\s*\|\s*(?=[-+]?\d)", " or ", value)  # |x| stays an absolute value


def _split(value: str) -> list[str]:
    """Top-level parts: split on , ; or and, never inside brackets (a tuple, interval or set is one part)."""
    parts, depth, start = [], 0, 0
    for m in _SPLIT.finditer(value):
        t = m.group()
        if t in ("(", "[", "{", "\\{"):
            depth += 1
        elif t in (")", "]", "}", "\\}"):
            depth = max(0, depth - 1)
        elif depth == 0:
            parts.append(value[start:m.start()])
            start = m.end()
    parts.append(value[start:])
    return [p.strip() for p in parts if p.strip()]


def _members(value: str) -> list[str]:
    """The values a final answer holds: its top-level parts, or the members of one bracketed group."""
    parts = _split(value)
    if len(parts) == 1:
        inner = re.fullmatch(r"(?:\\\{|[(\[{])(.*)(?:\\\}|[)\]}])", parts[0], re.DOTALL)
        if inner and len(_split(inner.group(1))) > 1:
            return _split(inner.group(1))
    return parts


@functools.lru_cache(maxsize=4096)
def _parsed(expr: str) -> tuple:
    # parsing_timeout=None: math-verify's timeouts use SIGALRM, which only works in the main thread,
    # and Prefect runs tasks in worker threads.
    from math_verify import parse

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns on every call without timeouts
    return tuple(parse(expr, parsing_timeout=None))


def _equivalent(gold_parsed: tuple, pred_parsed: tuple) -> bool:
    from math_verify import verify

    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(list(gold_parsed), list(pred_parsed), timeout_seconds=None))  # no SIGALRM, as in _parsed


def _key(value: str) -> str:
    return re.sub(r"\s+|\$", "", value).lower()


def _same(a: str, b: str) -> bool:
    if _key(a) == _key(b):
        return True
    return _equivalent(_parsed(f"${a}$"), _parsed(f"${b}$"))


def _distinct(values: list[str]) -> int:
    kept: list[str] = []
    for v in values:
        if not any(_same(v, k) for k in kept):
            kept.append(v)
    return len(kept)


def _hedged(value: str, gold: str | None) -> bool:
    """More distinct values than the gold holds: more top-level values than the gold's ("16 or 18"
    for 18, "(1, 2) or (2, 1)" for (1, 2)), except a bracketed gold's members written bare ("1, 2"
    for (1, 2)); or one bracketed group with more members than the gold ("\\{16, 18\\}" for 18).
    Without a gold, more than one distinct top-level value; a tuple, interval or set is one value."""
    value = _spelled_out(value)
    top, members = _split(value), _members(value)
    if _distinct(members) < 2:
        return False
    if gold is None:
        return _distinct(top) > 1
    gold = _spelled_out(gold)
    gold_top, gold_members = _split(gold), _members(gold)
    if len(top) > 1:
        bare = len(gold_top) == 1 and not any(re.search(r"[()\[\]{}]", p) for p in top)
        return _distinct(top) > (len(gold_members) if bare else len(gold_top))
    return _distinct(members) > len(gold_members)


def _answer_like(box: str, gold: str | None) -> bool:
    content = re.sub(r"\\(?:text|mathrm|textbf)\{([^{}]*)\}", r"\1", box)
    key = re.sub(r"[\s$]", "", content).lower()
    if not key or key in _PLACEHOLDERS:
        return bool(key) and gold is not None and key == _key(gold)
    if any(c.isdigit() for c in content) or re.search(r"\\[a-zA-Z]", content):
        return True
    if gold is not None:
        return not any(c.isdigit() for c in gold)
    return len(key) == 1  # a variable or a choice letter; without a gold, words are not taken for an answer


# --- reading a reply ---------------------------------------------------------------------------

def _statements(text: str, boxes: list[re.Match]) -> list[tuple[int, str, str]]:
    """(end position, kind, value) of every stated final answer, in text order."""
    stated = [(m.end(), "box", m.group(1)) for m in boxes]
    stated += [(m.end(), "hashes", m.group(1)) for m in _HASHES.finditer(text)]
    stated += [(m.end(), "answer_is", m.group(1)) for m in _ANSWER_IS.finditer(text)]
    return sorted(stated)


def _final(stated: list[tuple[int, str, str]]) -> tuple[int, str] | None:
    """The last statement of the strongest form present: box, then ####, then "the answer is"."""
    for kind in ("box", "hashes", "answer_is"):
        mine = [(end, v) for end, k, v in stated if k == kind]
        if mine:
            return mine[-1]
    return None


def _last_number(text: str) -> re.Match | None:
    """The last number outside a question: a restated question is not an answer."""
    unasked = _QUESTION.sub(lambda m: " " * len(m.group()), text)
    found = list(_NUMBER.finditer(unasked))
    return found[-1] if found else None


def _copied(text: str, number: re.Match, prompt: str) -> bool:
    """The last number sits in a phrase copied from the prompt (the words either side of it, or the
    two before it at the end), so it is the question's number, not a result."""
    before, after = words(text[:number.start()]), words(text[number.end():])
    gram = tuple(before[-1:] + words(number.group()) + after[:1]) if after else tuple(before[-2:] + [number.group()])
    p = words(prompt)
    return gram in {tuple(p[i:i + len(gram)]) for i in range(len(p) - len(gram) + 1)}


def final_answer(text: str) -> str | None:
    stated = _statements(text, [m for m in _BOXED.finditer(text) if m.group(1).strip()])
    final = _final(stated)
    if final:
        return final[1].strip().rstrip(".")
    number = _last_number(text)
    return number.group() if number else None


def _boxes(text: str, gold: str | None, require_format: bool) -> tuple[list[re.Match], str | None]:
    boxes = list(_BOXED.finditer(text))
    real = [m for m in boxes if _answer_like(m.group(1), gold)]
    if boxes and not real:
        return [], "non_answer" if any(m.group(1).strip() for m in boxes) else "empty_box"
    if require_format and not real:
        return [], "unformatted"
    return real, None


def _read(text: str, gold: str | None, require_format: bool = False,
          prompt: str | None = None) -> tuple[str | None, str | None]:
    """-> (why the reply cannot be credited, or None; its final answer)."""
    text = text.replace("\u2019", "'").replace("**", "  ")  # markdown bold would hide "**16** or **18**"
    if not text.strip():
        return "no_answer", None
    if degenerate(text):
        return "degenerate", None
    real, why = _boxes(text, gold, require_format)
    if why:
        return why, None
    stated = _statements(text, real)
    if stated:
        if any(_hedged(v, gold) for _, _, v in stated) or _distinct([_clean(v) for _, _, v in stated]) > 1:
            return "hedged", None
        if len(stated) > MAX_STATEMENTS:
            return "degenerate", None
        answer = (_final(stated) or (0, ""))[1]
        last = stated[-1][0]
    else:
        number = _last_number(text)
        if number is None:
            return "no_answer", None
        if prompt and echo_share(text, prompt) >= ECHO_SHARE and _copied(text, number, prompt):
            return "echo", None
        around = [m for m in _CANDIDATES.finditer(text) if m.start() <= number.start() < m.end()]
        if around and _hedged(around[-1].group(), gold):
            return "hedged", None
        last, answer = number.end(), number.group()
    if _RETRACT.search(text[last:]):
        return "retracted", None
    return None, answer


def verdict(text: str, gold: str, *, require_format: bool = False, prompt: str | None = None) -> tuple[bool, str]:
    """(correct, reason), the reason one of REASONS. `prompt`, when given, enables the echo check."""
    why, answer = _read(text, gold, require_format, prompt)
    if why:
        return False, why
    gold = _clean(gold)
    gold_parsed = _parsed(f"${gold}$") or _parsed(gold)
    return (True, "correct") if _equivalent(gold_parsed, _parsed(f"${_clean(answer)}$")) else (False, "wrong")


def is_correct(text: str, gold: str, prompt: str | None = None) -> bool:
    return verdict(text, gold, prompt=prompt)[0]


def has_answer_format(text: str, gold: str | None = None) -> bool:
    """The trained answer format: exactly one distinct, answer-like \\boxed{} value in a reply that
    is not hedged, retracted or degenerate. An empty or placeholder box earns nothing."""
    why, _ = _read(text, gold, require_format=True)
    return why is None
