"""Four synthetic fill-in-the-blank tasks (the T² paper's knowledge recall, multi-step arithmetic,
commonsense causal and spatial reasoning), generated procedurally from a seed.

Every question is a prompt ending in a cloze ("... The result is") whose gold answer is one word or
number; answer_span = " " + answer. ``random.Random`` streams are seeded by (task, seed, purpose),
so the same seed gives the same questions and fact base on every machine, and distinct seeds give
distinct ones. ``corpus(n_docs, seed)`` draws training documents in the same style from the same
distribution, never containing a held-out question's prompt (except knowledge, whose questions
are facts the corpus states):

- knowledge: a fact base of invented people (city, colour, food, pet, job). The corpus holds every
  person's biography, its sentences in a random order; questions ask one fact in the biography's
  own phrasing ("Nolu lives in"), so recall is memorisation of facts seen in pretraining and
  grows with N (capacity) and D (passes over the biographies). Version 1 asked held-out persons
  in a phrasing learnt only from the other persons' question lines (knowledge extraction, the
  "mixed training" of Allen-Zhu & Li, Physics of LMs 3.1): every micro-ladder checkpoint stayed
  at pass@1 ≤ 0.013 (issue 18), so that is now the shift.
- arithmetic, spatial: corpus lines are fresh draws, minus any held-out prompt.
- causal: the corpus states the causal rules and tells stories about training names; questions
  use held-out names.

Distribution shift (``shift`` = 0, 1, 2, ...; 0 is the training distribution): arithmetic gets
longer chains and larger numbers, spatial longer rows and farther positions, causal longer causal
chains, knowledge the question phrasing the corpus never uses ("The home city of Nolu is"). The
verifier is exact match of the completion's first word or number (case-insensitive).

Few-shot (``num_fewshot``): examples come from the training distribution, as corpus lines
"prompt answer." one per line before the question: a pool of 256 distinct training draws at shift
0 that are no held-out prompt (knowledge: facts of the fact base beyond the n asked).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from harness.errors import DataError, InvalidSetting

from .answers import first_word
from .base import Problem, Task, Verdict, check_fewshot

FEWSHOT_POOL = 256  # training questions the few-shot examples are drawn from


class _Synthetic(Task):
    """n distinct questions drawn by ``_draw(rng, split)``; subclasses define the draw."""

    name = ""
    version = "1"
    stop: tuple[str, ...] = ("\n", ".")
    template = ""
    _lines_per_doc = 8
    fewshot_delimiter = "\n"

    def __init__(self, seed: int = 0, n: int = 1000, shift: int | bool = 0, num_fewshot: int = 0,
                 fewshot_seed: int = 0, **_: object) -> None:
        if n < 1:
            raise InvalidSetting("n", n, f"a positive number of questions ({self.name})")
        check_fewshot(num_fewshot, fewshot_seed)
        self.seed, self.n, self.shift = int(seed), int(n), int(shift)
        self.num_fewshot, self.fewshot_seed = num_fewshot, fewshot_seed
        self.source = f"synthetic:{self.name} seed={self.seed} n={self.n} shift={self.shift}"

    def _rng(self, purpose: str) -> random.Random:
        return random.Random(f"{self.name}/{self.seed}/{purpose}")

    def _draw(self, rng: random.Random, split: str, shift: int) -> tuple[str, str]:
        """One (prompt, answer) of the given split ("test" or "train") at a shift level."""
        raise NotImplementedError

    def problems(self) -> list[Problem]:
        return self.with_fewshot(self._questions())

    def shot_text(self, example: Problem) -> str:
        """A corpus line: "prompt answer."."""
        return f"{example.prompt}{example.answer_span}."

    def fewshot_pool(self) -> tuple[list[Problem], str, str]:
        """:data:`FEWSHOT_POOL` distinct training draws (shift 0), none a held-out prompt."""
        held, seen = {p.prompt for p in self._questions()}, set()
        rng, pool = self._rng("fewshot"), []
        for _ in range(100 * FEWSHOT_POOL):
            prompt, answer = self._draw(rng, "train", 0)
            if prompt not in held and prompt not in seen:
                seen.add(prompt)
                pool.append(Problem(f"{self.name}/train/{len(pool)}", prompt, answer, " " + answer))
            if len(pool) == FEWSHOT_POOL:
                break
        return pool, "train", f"synthetic:{self.name} seed={self.seed} training draws"

    def _questions(self) -> list[Problem]:
        """The held-out questions, without few-shot context."""
        rng, seen, out = self._rng("questions"), set(), []
        for _ in range(100 * self.n):
            prompt, answer = self._draw(rng, "test", self.shift)
            if prompt in seen:
                continue
            seen.add(prompt)
            out.append(Problem(f"{self.name}/{len(out)}", prompt, answer, " " + answer,
                               {"shift": self.shift}))
            if len(out) == self.n:
                return out
        raise DataError(f"{self.name}: fewer than n={self.n} distinct questions at shift={self.shift}")

    def check(self, problem: Problem, completion: str) -> Verdict:
        got = first_word(completion)
        ok = got == problem.answer.lower()
        return Verdict(got, ok, "match" if ok else f"expected {problem.answer!r}")

    def corpus(self, n_docs: int, seed: int = 0) -> list[str]:
        """``n_docs`` training documents (lines "prompt answer.") from the training distribution
        (shift 0), none containing a held-out prompt."""
        return [doc for doc, _ in zip(self._docs(seed), range(n_docs))]

    def _docs(self, seed: int) -> Iterator[str]:
        held = {p.prompt for p in self._questions()}
        rng = self._rng(f"corpus/{seed}")
        while True:
            lines = []
            while len(lines) < self._lines_per_doc:
                prompt, answer = self._draw(rng, "train", 0)
                if prompt not in held:
                    lines.append(f"{prompt} {answer}.")
            yield "\n".join(lines)


# --- knowledge recall -------------------------------------------------------------------------

_SYLLABLES = ["ba", "do", "ki", "lu", "me", "no", "pa", "ri", "so", "ta", "vo", "ze", "ga", "fi", "ho"]
# attribute: (biography sentence before its value, cloze prompt of shift >= 1, values)
_ATTRIBUTES = {
    "city": ("{e} lives in", "The home city of {e} is",
             ["Paris", "Rome", "Oslo", "Cairo", "Lima", "Tokyo", "Delhi", "Dublin", "Madrid", "Berlin"]),
    "color": ("{e} likes the color", "The favorite color of {e} is",
              ["red", "blue", "green", "yellow", "purple", "orange", "pink", "brown", "black", "white"]),
    "food": ("{e} eats", "The favorite food of {e} is",
             ["rice", "bread", "soup", "fish", "apples", "cheese", "beans", "eggs", "pasta", "plums"]),
    "pet": ("{e} has a pet", "The pet of {e} is a",
            ["cat", "dog", "bird", "horse", "goat", "rabbit", "mouse", "frog", "duck", "pig"]),
    "job": ("{e} works as a", "The job of {e} is",
            ["baker", "farmer", "doctor", "teacher", "pilot", "singer", "painter", "nurse", "tailor", "cook"]),
}


class Knowledge(_Synthetic):
    """Recall of invented facts stated in the corpus. The fact base holds ``people`` persons (default
    200: 1,000 facts of log2(10) bits each); questions ask one attribute of the first n/5 persons
    in the biographies' own phrasing ("Nolu lives in"). Shift >= 1 asks the same fact in a phrasing
    the corpus never uses ("The home city of Nolu is"): extraction, which micro-models do not learn
    (Allen-Zhu & Li, Physics of LMs 3.1)."""

    name = "knowledge"
    version = "2"
    template = "{person} likes the color {answer}"

    def __init__(self, seed: int = 0, n: int = 1000, shift: int | bool = 0, num_fewshot: int = 0,
                 fewshot_seed: int = 0, people: int = 200) -> None:
        super().__init__(seed=seed, n=n, shift=shift, num_fewshot=num_fewshot, fewshot_seed=fewshot_seed)
        if people < -(-self.n // len(_ATTRIBUTES)):
            raise InvalidSetting("people", people, f"at least n/{len(_ATTRIBUTES)} persons (knowledge)")
        self.people = int(people)
        self.source += f" people={self.people}"

    def facts(self) -> dict[str, dict[str, str]]:
        """The fact base: person -> attribute -> value, in question order."""
        rng = self._rng("facts")
        names: list[str] = []
        seen: set[str] = set()
        while len(names) < self.people:
            name = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
            if name not in seen:
                seen.add(name)
                names.append(name)
        return {e: {a: rng.choice(spec[2]) for a, spec in _ATTRIBUTES.items()} for e in names}

    def _pairs(self) -> list[tuple[str, str]]:
        """Every (person, attribute) of the fact base, in question order."""
        return [(e, a) for e in self.facts() for a in _ATTRIBUTES]

    def fewshot_pool(self) -> tuple[list[Problem], str, str]:
        """Facts of the fact base beyond the n asked, in the corpus's phrasing (the corpus states them)."""
        facts = self.facts()
        pool = [Problem(f"knowledge/train/{i}", _ATTRIBUTES[a][0].format(e=e), facts[e][a], " " + facts[e][a])
                for i, (e, a) in enumerate(self._pairs()[self.n:])]
        return pool, "train", f"synthetic:knowledge seed={self.seed} people={self.people} facts beyond n={self.n}"

    def _questions(self) -> list[Problem]:
        facts = self.facts()
        column = 1 if self.shift else 0
        return [Problem(f"knowledge/{i}", _ATTRIBUTES[a][column].format(e=e), facts[e][a],
                        " " + facts[e][a], {"shift": self.shift, "person": e, "attribute": a})
                for i, (e, a) in enumerate(self._pairs()[: self.n])]

    def _docs(self, seed: int) -> Iterator[str]:
        facts = self.facts()
        rng = self._rng(f"corpus/{seed}")
        while True:  # one epoch: every person's biography, its sentences in a random order
            people = list(facts)
            rng.shuffle(people)
            for i in range(0, len(people), self._lines_per_doc):
                yield "\n".join(" ".join(f"{_ATTRIBUTES[a][0].format(e=e)} {facts[e][a]}."
                                         for a in rng.sample(list(_ATTRIBUTES), len(_ATTRIBUTES)))
                                for e in people[i:i + self._lines_per_doc])


# --- multi-step arithmetic --------------------------------------------------------------------

class Arithmetic(_Synthetic):
    """A chain of add / subtract / multiply steps from a start value; every value stays >= 0.

    shift s: 2+s to 3+s steps, operands up to 10**(s+1) - 1."""

    name = "arithmetic"
    template = "Start at {a}. Add {b}. Subtract {c}. The result is {answer}"

    def _draw(self, rng: random.Random, split: str, shift: int) -> tuple[str, str]:
        top = 10 ** (shift + 1) - 1
        value = rng.randint(1, top)
        parts = [f"Start at {value}."]
        for _ in range(rng.randint(2 + shift, 3 + shift)):
            op = rng.choice(["add", "subtract", "multiply"])
            if op == "multiply" and value <= top:
                b = rng.randint(2, 3)
                value *= b
                parts.append(f"Multiply by {b}.")
            elif op == "subtract" and value > 0:
                b = rng.randint(1, min(value, top))
                value -= b
                parts.append(f"Subtract {b}.")
            else:
                b = rng.randint(1, top)
                value += b
                parts.append(f"Add {b}.")
        return " ".join(parts) + " The result is", str(value)


# --- commonsense causal -----------------------------------------------------------------------

# Causal chains: each event "<subject> is|are <state>" causes the next one in its chain; within a
# chain every subject is distinct, so "So <subject> is" has one answer.
_CHAINS = [
    [("the sky is", "cloudy"), ("the road is", "wet"), ("the car is", "slow"), ("the driver is", "late")],
    [("the oven is", "hot"), ("the bread is", "brown"), ("the kitchen is", "warm"), ("the cook is", "sweaty")],
    [("the water is", "cold"), ("the pond is", "frozen"), ("the ducks are", "hungry"), ("the farmer is", "busy")],
    [("the baby is", "tired"), ("the crib is", "full"), ("the room is", "quiet"), ("the parents are", "calm")],
    [("the sun is", "bright"), ("the snow is", "soft"), ("the hill is", "muddy"), ("the boots are", "dirty")],
    [("the dog is", "hungry"), ("the yard is", "noisy"), ("the cat is", "scared"), ("the mice are", "safe")],
    [("the plant is", "dry"), ("the leaves are", "brown"), ("the garden is", "ugly"), ("the gardener is", "sad")],
    [("the fridge is", "broken"), ("the milk is", "sour"), ("the cake is", "bad"), ("the guests are", "sick")],
    [("the lamp is", "off"), ("the room is", "dark"), ("the boy is", "scared"), ("the mother is", "worried")],
    [("the fire is", "big"), ("the house is", "smoky"), ("the alarm is", "loud"), ("the street is", "busy")],
    [("the shoes are", "new"), ("the runner is", "fast"), ("the coach is", "happy"), ("the team is", "proud")],
    [("the battery is", "empty"), ("the phone is", "dead"), ("the girl is", "bored"), ("the party is", "dull")],
    [("the wind is", "strong"), ("the tree is", "bent"), ("the path is", "blocked"), ("the hikers are", "stuck")],
    [("the soup is", "salty"), ("the man is", "thirsty"), ("the jug is", "empty"), ("the well is", "low")],
    [("the road is", "icy"), ("the bus is", "late"), ("the class is", "short"), ("the teacher is", "upset")],
    [("the tap is", "open"), ("the tub is", "full"), ("the floor is", "wet"), ("the mop is", "dirty")],
]
_NAMES_TEST = ["Ann", "Bob", "Cal", "Dan", "Eve", "Fay", "Gus", "Hal", "Ida", "Jay", "Kim", "Lea",
               "Max", "Ned", "Oda", "Pam", "Ray", "Sam", "Tom", "Una", "Val", "Wes", "Yul", "Zoe"]
_NAMES_TRAIN = ["Amy", "Ben", "Cat", "Dot", "Eli", "Fox", "Gil", "Hob", "Ivy", "Jon", "Kit", "Liv",
                "Mia", "Nat", "Oli", "Pip", "Quin", "Rex", "Sue", "Ted", "Uma", "Vic", "Wyn", "Zed"]
_SEEN = ["noticed", "saw", "heard", "read"]


class Causal(_Synthetic):
    """A cause is stated; the cloze asks for the state of a subject hops later in its causal chain.

    shift 0: 1 or 2 hops; shift s >= 1: exactly min(2 + s, 3) hops (the longest chains)."""

    name = "causal"
    template = "{Name} noticed that {cause}. So {subject} is {answer}"

    def _draw(self, rng: random.Random, split: str, shift: int) -> tuple[str, str]:
        chain = rng.choice(_CHAINS)
        hops = rng.randint(1, 2) if shift == 0 else min(2 + shift, len(chain) - 1)
        start = rng.randint(0, len(chain) - 1 - hops)
        subject, state = chain[start + hops]
        name = rng.choice(_NAMES_TEST if split == "test" else _NAMES_TRAIN)
        cause = " ".join(chain[start])
        return f"{name} {rng.choice(_SEEN)} that {cause}. So {subject}", state

    def _docs(self, seed: int) -> Iterator[str]:
        rules = [f"When {' '.join(c)}, {' '.join(e)}." for chain in _CHAINS for c, e in zip(chain, chain[1:])]
        rng = self._rng(f"rules/{seed}")
        for doc in super()._docs(seed):
            yield "\n".join(rng.sample(rules, 4)) + "\n" + doc


# --- spatial reasoning ------------------------------------------------------------------------

_OBJECTS = ["cup", "box", "pen", "book", "lamp", "ball", "hat", "key", "shoe", "bag", "clock",
            "vase", "bowl", "fork", "coin", "doll"]


class Spatial(_Synthetic):
    """Objects in a row, described by shuffled neighbour relations; the cloze asks for the object
    at an end of the row or a number of places left/right of another object.

    shift s: 3+2s to 4+2s objects, offsets up to 1+s places."""

    name = "spatial"
    template = ("The cup is left of the box. The pen is right of the box. "
                "The object just right of the cup is the {answer}")

    def _draw(self, rng: random.Random, split: str, shift: int) -> tuple[str, str]:
        row = rng.sample(_OBJECTS, rng.randint(3 + 2 * shift, 4 + 2 * shift))
        facts = [f"The {a} is left of the {b}." if rng.random() < 0.5 else f"The {b} is right of the {a}."
                 for a, b in zip(row, row[1:])]
        rng.shuffle(facts)
        kind = rng.choice(["end", "offset"])
        if kind == "end":
            side = rng.choice(["left", "right"])
            question, answer = f"The object at the far {side} is the", row[0 if side == "left" else -1]
        else:
            distance = rng.randint(1, min(1 + shift, len(row) - 1))
            i = rng.randint(0, len(row) - 1 - distance)
            if rng.random() < 0.5:
                anchor, answer, side = row[i], row[i + distance], "right"
            else:
                anchor, answer, side = row[i + distance], row[i], "left"
            where = "just" if distance == 1 else f"{distance} places"
            question = f"The object {where} {side} of the {anchor} is the"
        return " ".join(facts) + " " + question, answer
