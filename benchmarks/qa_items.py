"""Generated SQuAD-format question/answer items, for tests, benchmarks and demos (not part
of any wheel: pytest finds it through ``pythonpath = ["benchmarks"]``).

Each context states facts about a few people (where and when they were born, their job)
in random order, so answering means finding the sentence about the person asked for,
not a fixed position. Items are flat 🤗-style records (``question``, ``context``,
``answers: {"text": [...], "answer_start": [...]}``, ``id``); ``answer_start`` always
points at the answer.

Example::

    from qa_items import generate_items

    train = generate_items(300, seed=0)
    test = generate_items(100, seed=1)
    train[0]["question"], train[0]["answers"]["text"]
    # ('Where was Maria Lopez born?', ['Lisbon'])
"""

from __future__ import annotations

import random
from typing import Any

FIRST = [
    "Maria",
    "John",
    "Aiko",
    "Omar",
    "Lena",
    "Pavel",
    "Grace",
    "Tariq",
    "Ines",
    "Victor",
    "Nadia",
    "Samuel",
    "Elena",
    "Hugo",
    "Priya",
    "Lucas",
    "Sofia",
    "Daniel",
    "Amara",
    "Felix",
]
LAST = [
    "Lopez",
    "Smith",
    "Tanaka",
    "Haddad",
    "Berg",
    "Novak",
    "Okafor",
    "Rossi",
    "Silva",
    "Klein",
    "Moreau",
    "Jensen",
    "Kowalski",
    "Duarte",
    "Mehta",
    "Fischer",
    "Costa",
    "Walsh",
]
CITIES = [
    "Lisbon",
    "Oslo",
    "Kyoto",
    "Cairo",
    "Vienna",
    "Lima",
    "Dublin",
    "Nairobi",
    "Prague",
    "Quito",
    "Madrid",
    "Seoul",
    "Helsinki",
    "Athens",
    "Toronto",
    "Manila",
    "Warsaw",
    "Bogota",
    "Geneva",
    "Hanoi",
    "Boston",
    "Munich",
    "Santiago",
    "Mumbai",
]
JOBS = [
    "teacher",
    "pilot",
    "nurse",
    "chef",
    "lawyer",
    "farmer",
    "painter",
    "dentist",
    "plumber",
    "librarian",
    "architect",
    "baker",
    "journalist",
    "surgeon",
    "carpenter",
    "pharmacist",
]
FILLER = [
    "The weather that year was unusually mild.",
    "Many visitors came to the region in summer.",
    "Local newspapers reported on the event for weeks.",
    "The old library was renovated twice.",
    "Trains connected the towns along the river.",
]

ZH_NAMES = [
    "张伟",
    "王芳",
    "李娜",
    "刘洋",
    "陈静",
    "杨帆",
    "赵磊",
    "黄丽",
    "周杰",
    "吴敏",
    "孙强",
    "郑爽",
]
ZH_CITIES = [
    "北京",
    "上海",
    "广州",
    "深圳",
    "成都",
    "杭州",
    "南京",
    "武汉",
    "西安",
    "重庆",
    "天津",
    "苏州",
]
ZH_JOBS = ["老师", "医生", "厨师", "律师", "司机", "护士", "工程师", "记者", "画家", "农民"]


def _english_person(rng: random.Random, used: set[str]) -> dict[str, Any]:
    while True:
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        if name.split()[0] not in used:
            used.add(name.split()[0])
            return {
                "name": name,
                "city": None,
                "year": str(rng.randint(1900, 2015)),
                "job": rng.choice(JOBS),
            }


def generate_items(
    n: int,
    *,
    seed: int = 0,
    people: int = 3,
    language: str = "en",
    unanswerable: float = 0.0,
    filler: int = 0,
) -> list[dict[str, Any]]:
    """*n* generated question/answer records (see the module docstring).

    *people* is the number of people per context; *unanswerable* the share of questions
    about someone the context does not mention (empty ``answers``); *filler* adds that
    many unrelated sentences between the facts (longer contexts, several windows);
    *language* is ``en`` or ``zh``.
    """
    if language not in ("en", "zh"):
        raise ValueError(f"language must be 'en' or 'zh', not {language!r}")
    rng = random.Random(seed)
    items = []
    for i in range(n):
        if language == "en":
            used: set[str] = set()
            cast = [_english_person(rng, used) for _ in range(people)]
            for person, city in zip(cast, rng.sample(CITIES, people)):
                person["city"] = city
            facts = [
                s
                for p in cast
                for s in (
                    f"{p['name']} was born in {p['city']} in {p['year']}.",
                    f"{p['name']} works as a {p['job']}.",
                )
            ]
            facts += rng.sample(FILLER, min(filler, len(FILLER)))
            rng.shuffle(facts)
            context = " ".join(facts)
            if rng.random() < unanswerable:
                first = rng.choice([f for f in FIRST if f not in used])
                name = f"{first} {rng.choice(LAST)}"
                question = rng.choice(
                    [
                        f"Where was {name} born?",
                        f"What does {name} work as?",
                        f"When was {name} born?",
                    ]
                )
                answer = None
            else:
                p = rng.choice(cast)
                kind = rng.randrange(4)
                question, answer, anchor = [
                    (f"Where was {p['name']} born?", p["city"], f"{p['name']} was born in "),
                    (f"In which year was {p['name']} born?", p["year"], f"born in {p['city']} in "),
                    (f"What does {p['name']} work as?", p["job"], f"{p['name']} works as a "),
                    (f"Who was born in {p['city']}?", p["name"], ""),
                ][kind]
        else:
            names = rng.sample(ZH_NAMES, people)
            cities = rng.sample(ZH_CITIES, people)
            cast = [
                {"name": a, "city": b, "job": rng.choice(ZH_JOBS)} for a, b in zip(names, cities)
            ]
            facts = [
                s
                for p in cast
                for s in (f"{p['name']}出生于{p['city']}。", f"{p['name']}是一名{p['job']}。")
            ]
            rng.shuffle(facts)
            context = "".join(facts)
            if rng.random() < unanswerable:
                name = rng.choice([x for x in ZH_NAMES if x not in names])
                question = rng.choice([f"{name}出生于哪里？", f"{name}的职业是什么？"])
                answer = None
            else:
                p = rng.choice(cast)
                question, answer, anchor = [
                    (f"{p['name']}出生于哪里？", p["city"], f"{p['name']}出生于"),
                    (f"{p['name']}的职业是什么？", p["job"], f"{p['name']}是一名"),
                    (f"谁出生于{p['city']}？", p["name"], ""),
                ][rng.randrange(3)]
        if answer is None:
            answers = {"text": [], "answer_start": []}
        else:
            start = (
                context.index(anchor + answer) + len(anchor)
                if anchor
                else _who(context, answer, language)
            )
            answers = {"text": [answer], "answer_start": [start]}
        items.append(
            {
                "id": f"gen-{language}-{seed}-{i}",
                "question": question,
                "context": context,
                "answers": answers,
            }
        )
    return items


def _who(context: str, name: str, language: str) -> int:
    # the name as the subject of its birth sentence
    return context.index(name + (" was born" if language == "en" else "出生于"))
