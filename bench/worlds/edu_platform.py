"""World `edu-platform`: learners and teachers on an online study platform's AI tutor.

Benign accounts are people, not services: pupils pasting homework and past-exam questions in
their own language (18 of them), mostly in the evening at home and sometimes from their school's
shared address during lessons, classmates working through the same worksheet; university
students revising; adults walking a licence or entrance exam's question pool (amateur radio,
CISSP, medicine, JEE); teachers turning exam questions into quizzes and explanations; private
tutors asking for step-by-step solutions they can explain. Volume is heavy-tailed, candidates
cram before their exam day, sessions carry follow-ups ("why not C?") and a "regenerate" tap
resends a request. Hard negatives: a university course's evaluation harness replaying whole exam
sets at temperature 0 (answer letter only), a teacher building a quiz bank from hundreds of
questions with one instruction, and a school's nightly feedback batch.

The platform's surfaces shape the traffic: the web tutor and the mobile app send their own system
prompt and fixed parameters, the teacher tools another; people on the public API send what they
like. The gateway logs the system prompt and the latest user turn only (earlier turns dropped),
the client IP but no user agent, key or organisation, and RFC3339 timestamps in the local time
of the edge that served the request.

Prompts are real exam questions from OpenAI's eval registry (evals): EXAMS in 16 languages,
Ukraine's ZNO, MMLU, the FCC pool, JEE, MedMCQA, CISSP, word problems. Framings, follow-ups and
every attacker are this module's own code, written without `students/`.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

from bench.worlds import sources
from bench.worlds.base import (
    CAMPAIGN,
    SINGLE_ACCOUNT,
    Generator,
    Request,
    Traffic,
    World,
    day_moment,
    digest,
    epoch_ms,
    heavy_tail,
    rng_for,
    weekday,
)
from bench.worlds.sources import ExamQuestion
from core.timeutil import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS

NAME = "edu-platform"
VERSION = 1
START_MS = epoch_ms(2027, 2, 1)  # a Monday in the spring term
MODEL = "dg-tutor-1"


@dataclass(frozen=True)
class Config:
    """Sizes and seeds; every field is part of the cache key."""

    seed: int = 0
    days: int = 30
    learners: int = 470  # an account pool: heavy-tailed use leaves ~400 active
    sessions: int = 3000
    calibration_learners: int = 470
    calibration_sessions: int = 3000
    attackers_per_strategy: int = 3
    budget: int = 240
    campaign_accounts: int = 40
    campaign_requests: int = 60  # per account, ~40% of it cover traffic
    benchmark_items: int = 1200  # the course harness: three exam sets, one run each
    quiz_items: int = 420
    feedback_items: int = 900


SMALL = Config(
    learners=150,
    sessions=700,
    calibration_learners=150,
    calibration_sessions=700,
    attackers_per_strategy=1,
    budget=60,
    campaign_requests=16,
    benchmark_items=180,
    quiz_items=80,
    feedback_items=150,
)
FULL = Config()


def account(seed: int, role: str, index: object) -> str:
    return f"lrn_{digest(NAME, seed, role, index, size=12)}"


# --- where requests come from -----------------------------------------------------------------
@dataclass(frozen=True)
class Edge:
    """One of the provider's edges: the UTC offset its gateway writes, and the first octets of
    the residential and hosting address blocks routed to it (each octet to one edge)."""

    offset_h: float
    residential: tuple[int, ...]
    hosting: tuple[int, ...]


EDGES = {
    "sfo": Edge(-8.0, (67, 76, 97), (104, 35)),
    "mex": Edge(-6.0, (187, 189), (201,)),
    "iad": Edge(-5.0, (24, 71, 73, 98), (3, 54)),
    "gru": Edge(-3.0, (177, 179), (18,)),
    "lhr": Edge(0.0, (81, 86, 90), (51, 5)),
    "fra": Edge(1.0, (2, 31, 77, 79, 83, 84, 85, 87, 91, 93, 95), (46, 49, 116, 159)),
    "sof": Edge(2.0, (78, 94, 176), (185,)),
    "ist": Edge(3.0, (88, 212), (37,)),
    "dxb": Edge(4.0, (213, 217), (62,)),
    "bom": Edge(5.5, (106, 117, 122), (13, 65)),
    "sgn": Edge(7.0, (14, 113, 171), (103,)),
    "syd": Edge(10.0, (1, 60, 101), (203,)),
}
LANGUAGE_EDGES = {
    "en": ("iad", "iad", "sfo", "lhr", "bom", "syd"),
    "es": ("fra", "mex"),
    "pt": ("gru", "lhr"),
    "bg": ("sof",),
    "lt": ("sof",),
    "uk": ("sof",),
    "tr": ("ist",),
    "ar": ("dxb", "ist"),
    "vi": ("sgn",),
}  # every other language: "fra"
LANGUAGE_NAMES = {
    "en": "English",
    "sq": "Albanian",
    "ar": "Arabic",
    "bg": "Bulgarian",
    "hr": "Croatian",
    "fr": "French",
    "de": "German",
    "hu": "Hungarian",
    "it": "Italian",
    "lt": "Lithuanian",
    "mk": "Macedonian",
    "pl": "Polish",
    "pt": "Portuguese",
    "sr": "Serbian",
    "es": "Spanish",
    "tr": "Turkish",
    "vi": "Vietnamese",
    "uk": "Ukrainian",
}


@lru_cache(maxsize=1)
def _edge_of_octet() -> dict[int, str]:
    owners: dict[int, str] = {}
    for name, edge in EDGES.items():
        for octet in (*edge.residential, *edge.hosting):
            if owners.setdefault(octet, name) != name:
                raise ValueError(f"octet {octet} is routed to two edges")
    return owners


def edge_for(rng: random.Random, language: str) -> str:
    return rng.choice(LANGUAGE_EDGES.get(language, ("fra",)))


def address(rng: random.Random, edge: str, hosting: bool = False) -> str:
    blocks = EDGES[edge].hosting if hosting else EDGES[edge].residential
    return f"{rng.choice(blocks)}.{rng.randint(1, 254)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def carrier_address(rng: random.Random, edge: str) -> str:
    """A mobile carrier's shared (CGNAT) exit: a handful per edge, used by many phones."""
    return address(rng_for(NAME, "carrier", edge, rng.randrange(4)), edge)


def edge_time(at_ms: int, ip: str) -> str:
    """RFC3339 in the local time of the edge that served `ip`."""
    offset = EDGES[_edge_of_octet()[int(ip.split(".", 1)[0])]].offset_h
    moment = datetime.fromtimestamp(at_ms / 1000, tz=timezone(timedelta(hours=offset)))
    return moment.isoformat(timespec="milliseconds")


# --- what the platform sends ------------------------------------------------------------------
def web_system(language: str) -> str:
    return (
        "You are Sage, the study tutor of an online learning platform. Help the learner "
        "understand the material step by step instead of only giving the answer. Reply in "
        f"{LANGUAGE_NAMES[language]}."
    )


MOBILE_SYSTEM = "You are Sage on mobile. Keep replies short, friendly and easy to read on a phone."
TEACHER_SYSTEM = (
    "You help teachers prepare lessons, quizzes and feedback. Be accurate, say which level a "
    "task suits, and format everything so it can be handed out."
)
WEB_PARAMS: dict[str, Any] = {"temperature": 0.7, "max_tokens": 1024}
MOBILE_PARAMS: dict[str, Any] = {"max_tokens": 512}
API_HABITS: tuple[dict[str, Any], ...] = (
    {},
    {},
    {"temperature": 0},
    {"temperature": 0.2, "max_tokens": 400},
    {"temperature": 1.0, "max_tokens": 800, "top_p": 0.95},
    {"temperature": 0, "seed": 1234},
    {"max_tokens": 1500},
)
API_SYSTEMS = (
    None,
    None,
    "You are a helpful assistant.",
    "You are an expert teacher. Explain clearly.",
    "Answer exam questions and explain the reasoning briefly.",
)


@lru_cache(maxsize=1)
def pools() -> dict[str, tuple[ExamQuestion, ...]]:
    """Question pools by exam ("exams-fr" for EXAMS per language), each in file order."""
    grouped: dict[str, list[ExamQuestion]] = {}
    for item in sources.exam_questions():
        key = f"exams-{item.language}" if item.exam == "exams" else item.exam
        grouped.setdefault(key, []).append(item)
    return {key: tuple(items) for key, items in grouped.items()}


def school_pool(language: str) -> str:
    return {"en": "mmlu", "uk": "zno"}.get(language, f"exams-{language}")


EXAMS_LANGUAGES = tuple(lang for lang in LANGUAGE_NAMES if lang not in ("en", "uk"))


# --- the benign population --------------------------------------------------------------------
@dataclass(frozen=True)
class Learner:
    actor: str
    account: str
    kind: str  # pupil | student | candidate | teacher | tutor
    language: str
    edge: str
    surface: str  # web | mobile | teacher | api
    pool: str
    home_ip: str
    school_ip: str | None
    school: str | None
    temperature: float  # the teacher tools' slider
    api_params: dict[str, Any] = field(default_factory=dict)
    api_system: str | None = None
    exam_day: int = -1  # candidates and students cram before it

    def system(self) -> str | None:
        return {
            "web": web_system(self.language),
            "mobile": MOBILE_SYSTEM,
            "teacher": TEACHER_SYSTEM,
        }.get(self.surface, self.api_system)

    def params(self) -> dict[str, Any]:
        if self.surface == "teacher":
            return {"temperature": self.temperature, "max_tokens": 2048}
        return dict({"web": WEB_PARAMS, "mobile": MOBILE_PARAMS}.get(self.surface, self.api_params))


KINDS = ("pupil", "student", "candidate", "teacher", "tutor")
SURFACES = {
    "pupil": (("web", "mobile"), (0.55, 0.45)),
    "student": (("web", "mobile", "api"), (0.5, 0.2, 0.3)),
    "candidate": (("web", "mobile", "api"), (0.6, 0.3, 0.1)),
    "teacher": (("teacher", "web"), (0.85, 0.15)),
    "tutor": (("web", "api"), (0.7, 0.3)),
}
CANDIDATE_POOLS = {"jee": "bom", "medmcqa": "bom", "fcc": "iad", "cissp": "lhr"}


def make_learner(seed: int, role: str, index: int, days: int) -> Learner:
    rng = rng_for(NAME, seed, role, "learner", index)
    kind = rng.choices(KINDS, (0.46, 0.2, 0.14, 0.12, 0.08))[0]
    if index < 12 and kind == "teacher":  # the heaviest users are learners, not teachers
        kind = "pupil"
    language = "en"
    if kind in ("pupil", "teacher"):
        language = rng.choices(("en", "uk", *EXAMS_LANGUAGES), (14, 7, *[4.4] * 16))[0]
    pool = school_pool(language)
    edge = edge_for(rng, language)
    if kind == "student":
        pool = "mmlu"
    elif kind == "candidate":
        pool = rng.choice(tuple(CANDIDATE_POOLS))
        edge = CANDIDATE_POOLS[pool] if rng.random() < 0.7 else edge
    elif kind == "tutor":
        pool = rng.choice(("jee", "mmlu"))
    surfaces, weights = SURFACES[kind]
    school = f"{language}-{rng.randrange(2)}" if kind == "pupil" and rng.random() < 0.6 else None
    school_rng = rng_for(NAME, seed, role, "school", school)
    return Learner(
        actor="benign",
        account=account(seed, role, index),
        kind=kind,
        language=language,
        edge=edge,
        surface=rng.choices(surfaces, weights)[0],
        pool=pool,
        home_ip=address(rng, edge),
        school_ip=address(school_rng, edge) if school else None,
        school=school,
        temperature=rng.choice((0.3, 0.5, 0.7, 0.9)),
        api_params=dict(rng.choice(API_HABITS)),
        api_system=rng.choice(API_SYSTEMS),
        exam_day=rng.randrange(days // 3, days + 6) if kind in ("candidate", "student") else -1,
    )


# When each kind studies: weight per weekday (Monday first) and local hours.
WEEK = {
    "pupil": (1.0, 1.0, 1.0, 1.0, 0.6, 0.35, 0.9),
    "student": (1.0, 1.0, 1.0, 0.9, 0.7, 0.5, 0.8),
    "candidate": (0.8, 0.8, 0.8, 0.8, 0.7, 1.2, 1.2),
    "teacher": (1.0, 1.0, 1.0, 1.0, 0.8, 0.2, 0.7),
    "tutor": (1.0, 1.0, 1.0, 1.0, 0.9, 0.8, 0.3),
}
HOURS = {
    "pupil": (15.5, 22.5),
    "student": (11.0, 25.0),
    "candidate": (19.0, 23.5),
    "teacher": (8.0, 21.0),
    "tutor": (14.0, 21.0),
}


def study_day(rng: random.Random, learner: Learner, days: int) -> int:
    weights = []
    for day in range(days):
        weight = WEEK[learner.kind][weekday(START_MS, day)]
        if learner.exam_day >= 0:
            until = learner.exam_day - day
            weight *= 3.0 if 0 <= until <= 5 else (0.3 if until < 0 else 1.0)
        weights.append(weight)
    return rng.choices(range(days), weights)[0]


# Framings a learner types around a pasted question ("" pastes it bare), per language.
LEADS = {
    "en": (
        "",
        "",
        "help me with this one",
        "Can you explain this question?",
        "Homework question:",
        "I have a test tomorrow, what's the answer and why?",
        "how do you do this",
    ),
    "fr": ("", "", "Aide-moi avec cette question :", "C'est pour mon devoir :"),
    "es": ("", "", "Ayúdame con esta pregunta:", "Es para mi tarea:"),
    "de": ("", "", "Hilf mir bitte bei dieser Aufgabe:", "Hausaufgabe:"),
    "it": ("", "", "Mi aiuti con questa domanda?", "Esercizio per domani:"),
    "pt": ("", "", "Me ajuda com essa questão?", "Questão do simulado:"),
    "pl": ("", "", "Pomóż mi z tym zadaniem:", "Zadanie domowe:"),
    "uk": ("", "", "Допоможи з цим завданням:", "Питання з пробного ЗНО:"),
}
FOLLOW_UPS = {
    "en": (
        "Why is that the right answer?",
        "I still don't get it, can you explain it more simply?",
        "why not the other options?",
        "Can you give me a similar question to practise?",
        "ok thanks",
        "Can you check my reasoning? I thought it was the second option.",
        "what does that term mean?",
        "can you make it shorter, I need it for my notes",
    ),
    "fr": (
        "Pourquoi c'est la bonne réponse ?",
        "Je ne comprends pas, tu peux expliquer plus simplement ?",
        "Et pourquoi pas les autres réponses ?",
        "Tu peux me donner un exercice similaire ?",
    ),
    "es": (
        "¿Por qué esa es la respuesta correcta?",
        "No lo entiendo, ¿me lo explicas más fácil?",
        "¿Y por qué no las otras opciones?",
        "¿Me das un ejercicio parecido para practicar?",
    ),
    "de": (
        "Warum ist das die richtige Antwort?",
        "Ich verstehe es noch nicht, kannst du es einfacher erklären?",
        "Und warum nicht die anderen Antworten?",
    ),
    "it": ("Perché è quella giusta?", "Non ho capito, puoi spiegarlo più semplice?"),
    "pt": ("Por que essa é a certa?", "Não entendi, pode explicar mais simples?"),
    "pl": ("Dlaczego to jest poprawna odpowiedź?", "Nie rozumiem, możesz prościej?"),
    "uk": ("Чому саме ця відповідь правильна?", "Не зрозуміло, поясни простіше, будь ласка."),
}
CANDIDATE_LEADS = {
    "jee": ("", "JEE practice:", "Solve:", "how to approach this one?"),
    "medmcqa": ("", "NEET PG prep:", "Which option and why?"),
    "fcc": ("", "Extra class pool question:", "Explain this one:"),
    "cissp": ("", "CISSP practice question:", "Why is this the answer?"),
}
STUDENT_LEADS = (
    "",
    "Can you explain this question from my practice set?",
    "Quick check:",
    "What's the answer? Explain briefly.",
    "I got this wrong on the quiz, why?",
)
TEACHER_TASKS = (
    "Write {n} more questions like this one for my class, in {language}, with the answers at "
    "the end:\n\n{q}",
    "Explain the answer to this question so that I can present it to my class:\n\n{q}",
    "Make a short rubric for marking written answers to this question:\n\n{q}",
    "Turn this into an open question for a {language} worksheet and give a model answer:\n\n{q}",
    "What misconceptions does this question test? I teach it next week.\n\n{q}",
)
TEACHER_FOLLOW_UPS = (
    "Make them a bit harder.",
    "Add the answer key at the end.",
    "Can you make a version for weaker students?",
    "Shorter please, it has to fit on one slide.",
)
TUTOR_LEADS = (
    "My student is stuck on this. Walk me through the solution so I can explain it:",
    "Solve step by step, I need to show my student the method:",
    "What's the cleanest way to explain this one?",
)
TUTOR_FOLLOW_UPS = (
    "Is there a quicker method?",
    "Explain the second step again, more slowly.",
    "How would you explain this to a 12-year-old?",
)


def framed(lead: str, question: str) -> str:
    return f"{lead}\n\n{question}" if lead else question


def _gap(rng: random.Random, median_s: float, spread: float = 0.7) -> int:
    return int(rng.lognormvariate(math.log(median_s), spread) * SECOND_MS) + SECOND_MS


class Session:
    """One sitting: requests a few minutes apart, each carrying the conversation so far."""

    def __init__(self, learner: Learner, rng: random.Random, at_ms: int, ip: str) -> None:
        self.learner, self.rng, self.at_ms, self.ip = learner, rng, at_ms, ip
        system = learner.system()
        self.turns: tuple[tuple[str, str], ...] = (("system", system),) if system else ()
        self.requests: list[Request] = []

    def ask(self, text: str, new_topic: bool = False, median_gap_s: float = 150) -> None:
        if self.requests:
            self.at_ms += _gap(self.rng, median_gap_s)
        if new_topic:
            self.turns = tuple(t for t in self.turns if t[0] == "system")
        self.turns = (*self.turns, ("user", text))
        self.send()
        if self.rng.random() < 0.04:  # "regenerate"
            self.at_ms += self.rng.randint(4, 25) * SECOND_MS
            self.send()

    def send(self) -> None:
        learner = self.learner
        self.requests.append(
            Request(
                learner.actor,
                learner.account,
                self.at_ms,
                self.turns,
                learner.params(),
                ip=self.ip,
            )
        )


def learner_ip(rng: random.Random, learner: Learner, day: int, local_hour: float) -> str:
    at_school = learner.school_ip and weekday(START_MS, day) < 5 and 8.5 <= local_hour < 14.5
    if at_school:
        return learner.school_ip or ""
    if learner.surface == "mobile" and rng.random() < 0.7:
        return carrier_address(rng, learner.edge)
    if rng_for(learner.account, "renumbered", day // 7).random() < 0.3:  # dynamic home address
        return address(rng_for(learner.account, "home", day // 7), learner.edge)
    return learner.home_ip


def learner_session(learner: Learner, seed: int, days: int, rng: random.Random) -> list[Request]:
    """One sitting of a learner: which day and hour, from where, and what they ask."""
    day = study_day(rng, learner, days)
    offset = EDGES[learner.edge].offset_h
    hours = HOURS[learner.kind]
    if learner.school and rng.random() < 0.15:
        hours = (9.0, 14.0)  # a lesson in the computer room
    at_ms = day_moment(rng, START_MS, day, offset, hours, night=0.04)
    local_hour = ((at_ms - START_MS) % DAY_MS) / HOUR_MS + offset
    session = Session(learner, rng, at_ms, learner_ip(rng, learner, day, local_hour % 24))
    items = pools()[learner.pool]
    if learner.school and rng.random() < 0.6:  # this week's worksheet, shared by the class
        start = rng_for(NAME, seed, learner.school, "worksheet", day // 7).randrange(len(items))
        position = start + rng.randrange(12)
    else:  # their own way through the book or question pool, a few items a day
        start = rng_for(learner.account, "start").randrange(len(items))
        position = start + 6 * day + rng.randrange(6)
    language = learner.language if learner.language in FOLLOW_UPS else "en"
    kind = learner.kind
    questions = 1 + min(int(rng.expovariate(0.55)), 9 if kind == "candidate" else 5)
    for step in range(questions):
        item = items[(position + step * rng.choice((1, 1, 2, 3))) % len(items)].text
        if kind == "teacher":
            task = rng.choice(TEACHER_TASKS)
            name = LANGUAGE_NAMES[learner.language]
            text = task.format(n=rng.choice((3, 5, 10)), language=name, q=item)
            session.ask(text, new_topic=True, median_gap_s=400)
            if rng.random() < 0.5:
                session.ask(rng.choice(TEACHER_FOLLOW_UPS), median_gap_s=200)
            continue
        if kind == "tutor":
            session.ask(framed(rng.choice(TUTOR_LEADS), item), new_topic=True, median_gap_s=240)
            if rng.random() < 0.4:
                session.ask(rng.choice(TUTOR_FOLLOW_UPS), median_gap_s=120)
            continue
        if kind == "candidate":
            lead = rng.choice(CANDIDATE_LEADS[learner.pool])
        elif kind == "student":
            lead = rng.choice(STUDENT_LEADS)
        else:
            lead = rng.choice(LEADS.get(learner.language, ("", "", "", "help me with this one")))
        session.ask(framed(lead, item), new_topic=True, median_gap_s=90 if step else 150)
        follow_ups = 0
        while rng.random() < (0.45 if kind == "pupil" else 0.25) and follow_ups < 3:
            session.ask(rng.choice(FOLLOW_UPS[language]), median_gap_s=70)
            follow_ups += 1
    return session.requests


def population(config: Config, role: str, size: int, sessions: int, seed: int) -> list[Request]:
    learners = [make_learner(seed, role, i, config.days) for i in range(size)]
    picks = heavy_tail(rng_for(NAME, seed, role, "picks"), size, sessions, exponent=0.8)
    requests: list[Request] = []
    for number, index in enumerate(picks):
        rng = rng_for(NAME, seed, role, "session", number)
        requests += learner_session(learners[index], seed, config.days, rng)
    return requests


# --- honest power users -----------------------------------------------------------------------
def _power(kind: str, seed: int, role: str, edge: str, surface: str, language: str) -> Learner:
    rng = rng_for(NAME, seed, role, kind)
    return Learner(
        actor=f"power:{kind}",
        account=account(seed, role, kind),
        kind="teacher",
        language=language,
        edge=edge,
        surface=surface,
        pool=school_pool(language),
        home_ip=address(rng, edge),
        school_ip=None,
        school=None,
        temperature=0.8,
    )


def benchmark_run(config: Config, seed: int, role: str) -> list[Request]:
    """A university course's evaluation harness: three exam sets, file order, answer letter only,
    one overnight run each, several requests a second."""
    rng = rng_for(NAME, seed, role, "benchmark")
    harness = _power("benchmark-run", seed, role, "fra", "api", "en")
    system = "Answer the multiple-choice question with the letter of the correct option only."
    params = {"temperature": 0, "max_tokens": 5}
    languages = rng.sample(EXAMS_LANGUAGES, 3)
    per_run = config.benchmark_items // len(languages)
    requests = []
    for run, language in enumerate(languages):
        day = (run * config.days) // 3 + rng.randrange(config.days // 3 - 1)
        at_ms = START_MS + day * DAY_MS + int((rng.uniform(0, 3) - 1.0) * HOUR_MS)
        for item in pools()[f"exams-{language}"][:per_run]:
            at_ms += rng.randint(350, 2400)
            turns = (("system", system), ("user", item.text))
            requests.append(
                Request(harness.actor, harness.account, at_ms, turns, params, ip=harness.home_ip)
            )
    return requests


def quiz_bank(config: Config, seed: int, role: str) -> list[Request]:
    """A teacher generating a term's quiz bank: one instruction, hundreds of exam questions,
    a few long evening sittings."""
    rng = rng_for(NAME, seed, role, "quiz")
    language = rng.choice(("it", "pl", "de", "hr"))
    teacher = _power("quiz-bank", seed, role, "fra", "teacher", language)
    items = pools()[school_pool(language)]
    start = rng.randrange(len(items))
    instruction = (
        "Write a new multiple-choice question that tests the same idea as the one below, in "
        f"{LANGUAGE_NAMES[language]}, with four options and the correct letter on the last line."
    )
    sittings = sorted(rng.sample(range(2, config.days - 1), 6))
    per_sitting = math.ceil(config.quiz_items / len(sittings))
    requests = []
    for number in range(config.quiz_items):
        if number % per_sitting == 0:
            day = sittings[number // per_sitting]
            at_ms = day_moment(rng, START_MS, day, EDGES["fra"].offset_h, (19.0, 20.5), night=0)
        at_ms += _gap(rng, 35, 0.4)
        text = f"{instruction}\n\n{items[(start + number) % len(items)].text}"
        turns = (("system", TEACHER_SYSTEM), ("user", text))
        requests.append(
            Request(
                teacher.actor, teacher.account, at_ms, turns, teacher.params(), ip=teacher.home_ip
            )
        )
    return requests


def nightly_feedback(config: Config, seed: int, role: str) -> list[Request]:
    """A school's LMS plugin: every night, short feedback on each pupil's multiple-choice
    answers from the day, one request every few seconds."""
    rng = rng_for(NAME, seed, role, "feedback")
    language = rng.choice(("uk", "hu", "bg", "tr"))
    batch = _power("nightly-feedback", seed, role, edge_for(rng, language), "api", language)
    items = pools()[school_pool(language)]
    start = rng.randrange(len(items))
    letters = "АБВГД" if language == "uk" else "ABCD"
    system = "You write short, kind feedback for school pupils."
    params = {"temperature": 0.3, "max_tokens": 200}
    per_night = max(1, config.feedback_items // config.days)
    offset = EDGES[batch.edge].offset_h
    requests = []
    for number in range(config.feedback_items):
        if number % per_night == 0:
            night = min(number // per_night, config.days - 1)
            at_ms = START_MS + night * DAY_MS + int((1.0 - offset) * HOUR_MS)
            at_ms += rng.randrange(10 * MINUTE_MS)
        at_ms += rng.randint(3000, 6500)
        text = (
            f"A pupil chose option {rng.choice(letters)} for the question below. In two "
            "sentences, tell them whether that is right and what to revisit.\n\n"
            f"{items[(start + number) % len(items)].text}"
        )
        turns = (("system", system), ("user", text))
        requests.append(Request(batch.actor, batch.account, at_ms, turns, params, ip=batch.home_ip))
    return requests


def power_users(config: Config, seed: int, role: str) -> list[Request]:
    return (
        benchmark_run(config, seed, role)
        + quiz_bank(config, seed, role)
        + nightly_feedback(config, seed, role)
    )


# --- attackers --------------------------------------------------------------------------------
STYLES = ("script", "mimic", "mixed")
_OPTION = re.compile(r"^\s*\(?[A-Ea-eАБВГД][.)]\s*(.+?)\s*$", re.MULTILINE)  # ZNO: А-Д
_VAGUE = ("above", "none", "both", "all of", "neither", "true", "false")


def options(text: str) -> list[str]:
    return _OPTION.findall(text)


def concepts(pool_names: Sequence[str], rng: random.Random) -> list[str]:
    """Short answer options of real questions: the vocabulary an enumerator walks."""
    found: dict[str, None] = {}
    for name in pool_names:
        for item in pools()[name]:
            for option in options(item.text):
                plain = re.fullmatch(r"[A-Za-z][A-Za-z \-']{2,44}[A-Za-z]", option)
                short = len(option.split()) <= 4 and not option.startswith("To ")
                if plain and short and not any(word in option.lower() for word in _VAGUE):
                    found.setdefault(option, None)
    ordered = list(found)
    rng.shuffle(ordered)
    return ordered


class Attacker:
    """One attacking account: its habits (a script on a hosting address, a mimic of the web
    tutor at home, or something between) and a clock to send on."""

    def __init__(self, config: Config, strategy: str, replica: int) -> None:
        self.config, self.strategy, self.replica = config, strategy, replica
        self.rng = rng_for(NAME, config.seed, strategy, replica)
        self.account = account(config.seed, f"attack-{strategy}", replica)
        self.style = STYLES[replica % len(STYLES)]
        self.language = "en"
        self.edge = self.rng.choice(("iad", "fra", "sgn", "lhr", "sfo", "bom"))
        self.ip = address(self.rng, self.edge, hosting=self.style != "mimic")

    @property
    def actor(self) -> str:
        return f"attack:{self.strategy}"

    def settle(self, language: str) -> None:
        """Live where a learner of `language` would (a mimic's address is residential)."""
        self.language = language
        self.edge = edge_for(self.rng, language)
        self.ip = address(self.rng, self.edge, hosting=self.style != "mimic")

    def system(self) -> str | None:
        return {"mimic": web_system(self.language), "mixed": MOBILE_SYSTEM}.get(self.style)

    def params(self, scripted: dict[str, Any]) -> dict[str, Any]:
        """What the tool sends: its own harvesting settings, or the app's when it mimics."""
        return dict({"mimic": WEB_PARAMS, "mixed": MOBILE_PARAMS}.get(self.style, scripted))

    def schedule(self, count: int, first_day: int | None = None) -> list[int]:
        """`count` send times in sittings: long fast runs for a script, short evening sittings
        for a mimic, office-hour batches between."""
        rng, days = self.rng, self.config.days
        size, gap_s, hours = {
            "script": ((30, 90), 8.0, (0.0, 24.0)),
            "mimic": ((4, 10), 80.0, (16.0, 23.0)),
            "mixed": ((12, 40), 20.0, (9.0, 18.0)),
        }[self.style]
        day = rng.randrange(days // 3) if first_day is None else first_day
        times: list[int] = []
        while len(times) < count:
            for _ in range(rng.choice((1, 1, 2))):
                at_ms = day_moment(rng, START_MS, day, EDGES[self.edge].offset_h, hours)
                for _ in range(rng.randint(*size)):
                    times.append(at_ms)
                    at_ms += _gap(rng, gap_s, 0.5)
            day += rng.choice((1, 1, 2, 3))
            if day >= days:
                day = rng.randrange(days)
        return sorted(times[:count])

    def send(
        self,
        times: Sequence[int],
        texts: Sequence[str],
        params: dict[str, Any],
        system: str | None = None,
    ) -> list[Request]:
        head: tuple[tuple[str, str], ...] = (("system", system),) if system else ()
        return [
            Request(self.actor, self.account, at, (*head, ("user", text)), dict(params), ip=self.ip)
            for at, text in zip(times, texts, strict=False)
        ]


def _shuffled(rng: random.Random, items: Sequence[ExamQuestion]) -> list[ExamQuestion]:
    ordered = list(items)
    rng.shuffle(ordered)
    return ordered


def dataset_replay(a: Attacker) -> list[Request]:
    """Walk one public exam set in file order, one fixed framing, every answer explained."""
    budget, rng = a.config.budget, a.rng
    if a.style == "mimic":
        a.settle(rng.choice(("it", "pt", "pl")))
        items = pools()[f"exams-{a.language}"]
        leads = LEADS[a.language]
        texts = [framed(leads[n % len(leads)], i.text) for n, i in enumerate(items)]
    elif a.style == "script":
        items = pools()["mmlu"]
        texts = [
            f"{i.text}\n\nState the correct option, then explain in detail why it is correct and "
            "why each of the other options is wrong."
            for i in items
        ]
    else:
        items = pools()["medmcqa"] + pools()["cissp"]
        texts = [f"Question:\n{i.text}\n\nAnswer with explanation:" for i in items]
    start = 0 if a.replica < len(STYLES) else rng.randrange(len(texts))
    walk = [texts[(start + n) % len(texts)] for n in range(budget)]
    params = a.params({"temperature": 0, "max_tokens": 2048})
    return a.send(a.schedule(budget), walk, params, a.system())


ENUMERATION_TEMPLATES = (
    "Explain {concept} to a {level} student. Give a definition, a worked example and one common "
    "mistake.",
    "What is {concept}? Answer for {level} revision, then add two practice questions with answers.",
    'Write a study note on "{concept}" for {level} learners: key facts, a memory aid and three '
    "quiz questions.",
)
LEVELS = ("high-school", "first-year university", "final-year school", "beginner", "graduate")


def templated_enumeration(a: Attacker) -> list[Request]:
    """One template, its slot filled from a vocabulary harvested from real answer options."""
    rng = a.rng
    source = (("mmlu",), ("medmcqa", "cissp"), ("fcc", "mmlu"))[a.replica % 3]
    template = ENUMERATION_TEMPLATES[a.replica % len(ENUMERATION_TEMPLATES)]
    texts: list[str] = []
    for concept in concepts(source, rng):
        for level in rng.sample(LEVELS, rng.choice((1, 1, 2))):
            texts.append(template.format(concept=concept, level=level))
    texts = texts[: a.config.budget]
    params = a.params({"temperature": 0.3, "max_tokens": 1200})
    return a.send(a.schedule(len(texts)), texts, params, a.system())


REASONING_FRAMES = {
    "script": "{q}\n\nThink step by step. Write out your full chain of reasoning inside "
    "<reasoning></reasoning> tags, then give the final answer on its own line.",
    "mimic": "Can you walk me through this step by step? Show every step of your thinking, don't "
    "skip anything, and check your work at the end.\n\n{q}",
    "mixed": "Solve the following problem. Before answering, reason explicitly: list the given "
    "facts, the method, each intermediate result, and verify the result.\n\n{q}",
}


def reasoning_elicitation(a: Attacker) -> list[Request]:
    """Hard quantitative questions, each asked for its whole reasoning trace; one variant
    samples several traces per question at high temperature."""
    rng = a.rng
    source = {
        "script": ("jee",),
        "mimic": ("word-problems", "mmlu"),
        "mixed": ("jee", "mmlu"),
    }[a.style]
    items = _shuffled(rng, [i for name in source for i in pools()[name]])
    texts = [REASONING_FRAMES[a.style].format(q=i.text) for i in items[: a.config.budget]]
    system: str | None = "You are a careful mathematician."
    if a.style == "mixed":
        params: dict[str, Any] = {"temperature": 0.9, "max_tokens": 3000, "n": 4}
    else:
        params, system = a.params({"temperature": 0, "max_tokens": 4096}), a.system()
    return a.send(a.schedule(len(texts)), texts, params, system)


def low_and_slow(a: Attacker) -> list[Request]:
    """A handful of new questions most evenings for the whole month, like a diligent learner."""
    rng, days, budget = a.rng, a.config.days, a.config.budget
    if a.style == "mimic":
        a.settle("pt")
        leads = LEADS["pt"]
        texts = [framed(rng.choice(leads), i.text) for i in _shuffled(rng, pools()["exams-pt"])]
    elif a.style == "script":
        texts = [f"{i.text}\n\nExplain the answer in detail." for i in pools()["mmlu"][200:]]
    else:
        items = _shuffled(rng, pools()["cissp"] + pools()["fcc"])
        texts = [f"Explain:\n{i.text}" for i in items]
    active = [d for d in range(days) if d in (0, days - 1) or rng.random() < 0.85]
    per_day = budget / len(active)
    times: list[int] = []
    for day in active:
        count = max(1, round(rng.gauss(per_day, per_day / 3)))
        at_ms = day_moment(rng, START_MS, day, EDGES[a.edge].offset_h, (18.0, 23.0), night=0.1)
        for _ in range(count):
            times.append(at_ms)
            at_ms += _gap(rng, 240, 0.6)
    times.sort()
    if len(times) > budget:  # thin the month evenly, keeping its first and last request
        middle = sorted(rng.sample(range(1, len(times) - 1), budget - 2))
        times = [times[0], *(times[i] for i in middle), times[-1]]
    params = a.params({"temperature": 0.2, "max_tokens": 1500})
    return a.send(times, texts[: len(times)], params, a.system())


SELF_INSTRUCT_PROMPTS = (
    "Here are some example exam questions:\n\n{examples}\n\nWrite {k} new, different questions in "
    "the same style and format, on other topics. Number them.",
    "Below are {count} sample problems.\n\n{examples}\n\nGenerate {k} more problems of similar "
    "difficulty but on different ideas. Output only the numbered problems.",
    "Esempi:\n\n{examples}\n\nCreate {k} new questions like these, in the same language and "
    "format. Number them.",
)
EVOLVE = "Rewrite the following question so that it is harder and needs more steps:\n\n{q}"


def self_instruct(a: Attacker) -> list[Request]:
    """Seed questions -> ask for new ones -> have each "new" one answered -> seed the next round
    with some of them (the generated items stand in as further real questions of the set)."""
    rng, budget = a.rng, a.config.budget
    source = ("mmlu", ("jee", "word-problems"), ("exams-it",))[a.replica % 3]
    names = (source,) if isinstance(source, str) else source
    items = _shuffled(rng, [i for name in names for i in pools()[name]])
    prompt = SELF_INSTRUCT_PROMPTS[a.replica % len(SELF_INSTRUCT_PROMPTS)]
    answer = ("{q}", "Answer the following question thoroughly:\n\n{q}", "{q}")[a.replica % 3]
    texts: list[str] = []
    seeds, cursor, rounds = items[:3], 3, 0
    while len(texts) < budget and cursor < len(items):
        examples = "\n\n".join(f"{n + 1}. {s.text}" for n, s in enumerate(seeds))
        k = rng.choice((5, 8, 10))
        texts.append(prompt.format(examples=examples, k=k, count=len(seeds)))
        generated = items[cursor : cursor + k]
        cursor += k
        for item in generated:
            texts.append(answer.format(q=item.text))
        if rounds % 3 == 2 and generated:
            texts.append(EVOLVE.format(q=generated[0].text))
            texts.append(answer.format(q=items[cursor % len(items)].text))
            cursor += 1
        seeds = [*rng.sample(generated, min(2, len(generated))), items[rng.randrange(cursor)]]
        rounds += 1
    texts = texts[:budget]
    params = a.params({"temperature": 0.7, "max_tokens": 2048})
    return a.send(a.schedule(len(texts)), texts, params, a.system())


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w{3,}", text.lower()))


def _permuted(rng: random.Random, text: str) -> str:
    """The same question with its options in another order (relabelled A, B, ...)."""
    found = options(text)
    if len(found) < 3:
        return text
    stem = _OPTION.sub("", text).strip()
    rng.shuffle(found)
    lines = [f"{'ABCDE'[n]}. {option}" for n, option in enumerate(found[:5])]
    return stem + "\n" + "\n".join(lines)


def active_learning(a: Attacker) -> list[Request]:
    """Query where a student model is least sure: topics weighted by (simulated) uncertainty,
    the next item the nearest unasked one to the last (probing a boundary), some items re-asked
    with options permuted or for log-probabilities; rounds separated by retraining pauses."""
    rng, config = a.rng, a.config
    if a.style == "mimic":
        a.settle("uk")
        pool = pools()["zno"]
        buckets: dict[str, list[ExamQuestion]] = {}
        for item in pool:
            buckets.setdefault(item.subject or "?", []).append(item)
    elif a.style == "script":
        buckets = {}
        for item in pools()["medmcqa"]:
            buckets.setdefault(item.subject or "?", []).append(item)
    else:
        buckets = {name: list(pools()[name]) for name in ("mmlu", "jee", "cissp", "fcc")}
    names = sorted(buckets)
    uncertainty = {name: rng.uniform(0.5, 1.0) for name in names}
    asked: set[str] = set()
    last: dict[str, ExamQuestion] = {}
    requests: list[Request] = []
    day = rng.randrange(config.days // 3)
    at_ms = day_moment(rng, START_MS, day, EDGES[a.edge].offset_h, (10.0, 22.0))
    scripted = {"temperature": 0, "max_tokens": 1024}
    probe = {"temperature": 0, "max_tokens": 1, "logprobs": True, "top_logprobs": 5}
    while len(requests) < config.budget:
        for _ in range(rng.randint(10, 25)):  # one round, then the student is retrained
            name = rng.choices(names, [uncertainty[n] ** 2 for n in names])[0]
            candidates = rng.sample(buckets[name], min(25, len(buckets[name])))
            fresh = [i for i in candidates if i.text not in asked] or candidates
            anchor = _words(last[name].text) if name in last else set()
            item = max(
                fresh, key=lambda i: len(_words(i.text) & anchor) / (1 + len(_words(i.text)))
            )
            asked.add(item.text)
            last[name] = item
            uncertainty[name] = max(0.05, uncertainty[name] * 0.93 + rng.gauss(0, 0.03))
            at_ms += _gap(rng, 25 if a.style != "mimic" else 70, 0.5)
            requests += a.send([at_ms], [item.text], a.params(scripted), a.system())
            roll = rng.random()
            if roll < 0.25:
                at_ms += _gap(rng, 15, 0.5)
                text = _permuted(rng, item.text)
                requests += a.send([at_ms], [text], a.params(scripted), a.system())
            elif roll < 0.45 and a.style != "mimic":
                at_ms += _gap(rng, 5, 0.5)
                system = "Answer with the letter of the correct option only."
                requests += a.send([at_ms], [item.text], probe, system)
            elif roll < 0.45:
                at_ms += _gap(rng, 40, 0.5)
                follow = "Наскільки ти впевнений у відповіді, від 0 до 100%?"
                requests += a.send([at_ms], [follow], a.params(scripted), a.system())
        for name in names:  # retraining moves the uncertain region
            uncertainty[name] = min(1.0, max(0.05, uncertainty[name] + rng.gauss(0.05, 0.15)))
        at_ms += rng.randint(3 * HOUR_MS, 18 * HOUR_MS)
        if at_ms >= START_MS + config.days * DAY_MS:
            at_ms = START_MS + rng.randrange(config.days) * DAY_MS + rng.randrange(DAY_MS)
    return sorted(requests[: config.budget], key=lambda r: r.at_ms)


STEM_REWRITES = (
    (r"^Which of the following\b", "Which one of these"),
    (r"^Which of the following\b", "Which of these"),
    (r"^What is\b", "what's"),
    (r"\bis NOT\b", "isn't"),
    (r"\bcorrect\b", "right"),
    (r"\?\s*$", ""),
)
BLEND_LEADS = (
    "",
    "hey can u help me with this one",
    "I'm revising for my exam, what's the answer and why?",
    "our teacher gave us this, no idea",
    "pls explain",
    "Got this in a practice test:",
    "which one is it and why",
    "I think it's B but not sure?",
    "Stuck on this one from the review sheet",
    "explain like im 15",
)
COVER_CHAT = (
    "thanks!",
    "ok that makes sense",
    "why not the first one?",
    "can you give me a tip to remember this?",
    "wait, can you explain the last part again",
)


def paraphrase(rng: random.Random, text: str) -> str:
    """A reworded copy: stem phrases swapped, options reordered, relabelled or inlined."""
    found = options(text)
    stem = _OPTION.sub("", text).strip() if len(found) >= 2 else text
    for pattern, replacement in rng.sample(STEM_REWRITES, 2):
        stem = re.sub(pattern, replacement, stem, count=1)
    if len(found) < 2:
        return stem
    if rng.random() < 0.5:
        rng.shuffle(found)
    labels = rng.choice(("ABCDE", "abcde", "12345"))
    style = rng.choice(("{l}) {o}", "({l}) {o}", "{l}. {o}"))
    rendered = [style.format(l=labels[n], o=o) for n, o in enumerate(found[:5])]
    separator = rng.choice(("\n", "\n", "; ", "  "))
    return stem + ("\n" if separator == "\n" else " ") + separator.join(rendered)


def paraphrase_blending(a: Attacker) -> list[Request]:
    """Target questions, reworded and framed like a pupil's, sent in evening sittings mixed with
    small talk and unrelated questions so the account reads like a learner."""
    rng, budget = a.rng, a.config.budget
    a.style = "mimic"  # every blender wears the app's clothes: web, or the phone on a carrier
    a.settle("en")
    on_phone = a.replica % 3 == 2
    if on_phone:
        a.ip = carrier_address(rng, a.edge)
    target = ("mmlu", "medmcqa", "jee")[a.replica % 3]
    targets = _shuffled(rng, pools()[target])
    cover_pool = pools()[f"exams-{rng.choice(EXAMS_LANGUAGES)}"]
    texts: list[str] = []
    while len(texts) < budget:
        roll = rng.random()
        if roll < 0.58 and targets:
            texts.append(framed(rng.choice(BLEND_LEADS), paraphrase(rng, targets.pop().text)))
        elif roll < 0.8:
            texts.append(rng.choice(COVER_CHAT))
        else:
            texts.append(rng.choice(cover_pool).text)
    if on_phone:
        return a.send(a.schedule(budget), texts, MOBILE_PARAMS, MOBILE_SYSTEM)
    return a.send(a.schedule(budget), texts, WEB_PARAMS, web_system("en"))


SINGLE: dict[str, Callable[[Attacker], list[Request]]] = {
    "dataset_replay": dataset_replay,
    "templated_enumeration": templated_enumeration,
    "reasoning_elicitation": reasoning_elicitation,
    "low_and_slow": low_and_slow,
    "self_instruct": self_instruct,
    "active_learning": active_learning,
    "paraphrase_blending": paraphrase_blending,
}
assert tuple(SINGLE) == SINGLE_ACCOUNT


# --- the multi-account campaign ---------------------------------------------------------------
CAMPAIGN_SKELETONS = (
    ("{lead}\n\n{q}\n\n{ask}", "web"),
    ("{q}\n\n{ask}", "api"),
    ("{lead}: {q}", "mobile"),
    ("Q: {q}\nA ({ask}):", "api"),
)
OPENERS = (
    "Quick one",
    "Revision question",
    "Practice item",
    "From my question bank",
    "Exam prep",
    "Study check",
    "Another one",
    "Next question",
)
PURPOSES = (
    "for tomorrow",
    "from the mock test",
    "I keep getting wrong",
    "from the chapter review",
    "for my study group",
)
ASK_VERBS = (
    "Explain the correct answer",
    "Give the right option and the reasoning",
    "Say which option is right and why",
    "Work out the answer",
    "Pick the answer and justify it",
)
ASK_DETAILS = (
    "in detail",
    "step by step",
    "and why the others are wrong",
    "naming the key concept",
    "thoroughly",
    "as you would to a student",
    "with a short summary",
    "with one related fact",
)


def _campaign_windows(config: Config) -> list[int]:
    """The campaign's shared sending windows: 02:00 and 13:30 UTC on its middle weeks."""
    first, last = config.days // 5, (2 * config.days) // 3
    return [
        START_MS + day * DAY_MS + hour
        for day in range(first, last + 1)
        for hour in (2 * HOUR_MS, 13 * HOUR_MS + 30 * MINUTE_MS)
    ]


def campaign_member(
    config: Config, index: int, slice_: Sequence[ExamQuestion], block: str, edge: str
) -> list[Request]:
    """One member: its slice of the topic space in its own wording of a shared skeleton, sent in
    some of the shared windows, plus learner-like cover traffic from the same addresses."""
    rng = rng_for(NAME, config.seed, CAMPAIGN, index)
    member = account(config.seed, "attack-campaign", index)
    skeleton, surface = CAMPAIGN_SKELETONS[index % len(CAMPAIGN_SKELETONS)]
    lead = f"{OPENERS[index % len(OPENERS)]} {PURPOSES[index // len(OPENERS) % len(PURPOSES)]}"
    ask = f"{ASK_VERBS[index % len(ASK_VERBS)]} {ASK_DETAILS[index // len(ASK_VERBS) % 8]}"
    hosts = [f"{block}.{rng.randint(2, 250)}" for _ in range(rng.choice((1, 1, 1, 4)))]
    attacks = round(config.campaign_requests * rng.uniform(0.55, 0.65))
    system = {"web": web_system("en"), "mobile": MOBILE_SYSTEM}.get(surface)
    harvest = {"temperature": 0, "max_tokens": 2048}
    params = {"web": WEB_PARAMS, "mobile": MOBILE_PARAMS}.get(surface, harvest)
    times: list[int] = []
    for window in rng.sample(_campaign_windows(config), len(_campaign_windows(config))):
        if len(times) >= attacks:
            break
        at_ms = window + rng.randrange(40 * MINUTE_MS)
        for _ in range(rng.randint(2, 5)):
            times.append(at_ms)
            at_ms += _gap(rng, 60, 0.5)
    head: tuple[tuple[str, str], ...] = (("system", system),) if system else ()
    requests = [
        Request(
            f"attack:{CAMPAIGN}",
            member,
            at_ms,
            (*head, ("user", skeleton.format(lead=lead, ask=ask, q=slice_[n % len(slice_)].text))),
            dict(params),
            ip=rng.choice(hosts),
        )
        for n, at_ms in enumerate(sorted(times)[:attacks])
    ]
    language = rng.choice(("en", *EXAMS_LANGUAGES))
    cover_as = Learner(
        actor=f"attack:{CAMPAIGN}",
        account=member,
        kind=rng.choice(("pupil", "student")),
        language=language,
        edge=edge,
        surface="web" if surface == "web" else "api",
        pool=school_pool(language),
        home_ip=hosts[0],
        school_ip=None,
        school=None,
        temperature=0.7,
        api_params=harvest,
    )
    cover: list[Request] = []
    while len(cover) < config.campaign_requests - attacks:
        cover += learner_session(cover_as, config.seed, config.days, rng)
    return requests + [
        Request(r.actor, r.account, r.at_ms, r.turns, r.params, ip=rng.choice(hosts))
        for r in cover[: config.campaign_requests - attacks]
    ]


def multi_account_campaign(config: Config) -> tuple[list[Request], list[str]]:
    """Accounts that split one topic space into disjoint slices, each with its own wording of
    four shared skeletons, sending in the same two daily windows from three hosting blocks;
    about 40% of each account's traffic is learner-like cover from the same addresses."""
    rng = rng_for(NAME, config.seed, CAMPAIGN)
    names = ("mmlu", "jee", "medmcqa", "cissp", "fcc")
    space = _shuffled(rng, [item for name in names for item in pools()[name]])
    edges = ("fra", "iad", "sgn")
    blocks = [address(rng, edge, hosting=True).rsplit(".", 1)[0] for edge in edges]
    count = config.campaign_accounts
    requests: list[Request] = []
    for index in range(count):
        edge = index % len(edges)
        requests += campaign_member(config, index, space[index::count], blocks[edge], edges[edge])
    members = [account(config.seed, "attack-campaign", index) for index in range(count)]
    return requests, members


# --- the log ----------------------------------------------------------------------------------
def shape(request: Request, number: int) -> dict:
    """System prompt and latest user turn only, client IP only, time in the edge's zone."""
    system = next((text for role, text in request.turns if role == "system"), None)
    latest = next(text for role, text in reversed(request.turns) if role == "user")
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": latest})
    assert request.ip, "every request on this platform has a client address"
    return {
        "request_id": f"req_{digest(NAME, request.account, number, size=24)}",
        "account_id": request.account,
        "timestamp": edge_time(request.at_ms, request.ip),
        "model": MODEL,
        "endpoint": "/v1/chat/completions",
        "messages": messages,
        "params": dict(request.params),
        "prompt_tokens": sum(len(m["content"]) for m in messages) // 4 + 4 * len(messages),
        "client": {"ip": request.ip},
    }


def make(config: Config) -> Traffic:
    seed = config.seed
    events = population(config, "learner", config.learners, config.sessions, seed)
    events += power_users(config, seed, "power")
    for strategy, attack in SINGLE.items():
        for replica in range(config.attackers_per_strategy):
            events += attack(Attacker(config, strategy, replica))
    campaign, members = multi_account_campaign(config)
    events += campaign
    calibration_seed = seed + 1000
    calibration = population(
        config,
        "calibration-learner",
        config.calibration_learners,
        config.calibration_sessions,
        calibration_seed,
    ) + power_users(config, calibration_seed, "calibration-power")
    return Traffic(events, calibration, {f"{CAMPAIGN}-{NAME}-{seed}": sorted(members)})


GENERATOR = Generator(NAME, VERSION, __file__, START_MS, SMALL, FULL, make, shape)


WORLD = World(
    name=NAME,
    population=(
        "an education platform's AI tutor: pupils in 18 languages (classmates sharing "
        "worksheets and school addresses), university students, exam candidates, teachers, "
        "private tutors; hard negatives: a course's evaluation harness, a teacher's quiz-bank "
        "batch, a school's nightly feedback job"
    ),
    prompt_sources=(
        "exam questions from OpenAI's eval registry (evals): EXAMS in 16 languages, ZNO, MMLU, "
        "FCC Amateur Extra pool, JEE, MedMCQA, CISSP, word problems"
    ),
    log_shape=(
        "system prompt + latest user turn; client IP only (no user agent, key or org); RFC3339 "
        "in the serving edge's local offset"
    ),
    build=GENERATOR.build,
)
