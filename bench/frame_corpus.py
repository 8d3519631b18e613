"""A generated corpus of clinician phrasings with the case frame each must be read as.

Every guideline cell (Fleischner solid/ground-glass/part-solid/subsolid/excluded, Lung-RADS baseline and
growing, the category tables, USPSTF lung and breast, nodules on CTs done for something else, follow-up
turns) is phrased by combining forms: ages and sexes ("67M", "F 62"), smoking ("40 PY", "1/2 ppd x 45 yrs",
quit dates), sizes with units ("8x6 mm", "1.1 cm", "~4 mm"), types (GGN, subsolid, "solid bit"), exams
(CTPA, CT A/P for diverticulitis, LDCT, mammo, US), histories that exclude (melanoma, transplant on
tacrolimus), categories ("BR3", "LR 4X", "cat 2"), word orders, shorthand and one-letter typos.

Two disjoint form sets exist: ``tune`` (the reader was tuned on it) and ``held_out`` (its forms and seeds
were not used while tuning). Generation is seeded and deterministic.

    python bench/frame_corpus.py [--n 3000] [--set tune|held_out|both] [--show 20]

prints frame accuracy (an item is right when every expected field is read as expected) per cell and per
field, and the failures.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FIELDS = ("intent", "system", "size_mm", "nodule_type", "solid_mm", "setting", "status", "category", "age",
          "pack_years", "smoking", "quit_years", "known_cancer", "immunocompromised", "risk", "missing")


@dataclass
class Item:
    cell: str
    question: str
    expected: dict[str, Any]
    history: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Forms:
    """One disjoint set of phrasings. Each entry is a format string over named slots."""

    male: tuple[str, ...]
    female: tuple[str, ...]
    pack_years: tuple[str, ...]           # {py}
    ppd: tuple[str, ...]                  # {ppd} {yrs}
    quit: tuple[str, ...]                 # {q}
    never: tuple[str, ...]
    current: tuple[str, ...]
    size: tuple[str, ...]                 # {mm} / {cm}
    axes: tuple[str, ...]                 # {a} {b}
    solid: tuple[str, ...]
    ground_glass: tuple[str, ...]
    part_solid: tuple[str, ...]           # {c}
    subsolid: tuple[str, ...]
    incidental: tuple[str, ...]
    screening: tuple[str, ...]
    upper: tuple[str, ...]
    other_lobe: tuple[str, ...]
    cancer: tuple[str, ...]
    immuno: tuple[str, ...]
    ask: tuple[str, ...]
    growth: tuple[str, ...]               # {p} {n}
    birads: tuple[str, ...]               # {c}
    breast_exam: tuple[str, ...]
    lung_rads: tuple[str, ...]            # {c}
    eligible: tuple[str, ...]
    breast_eligible: tuple[str, ...]
    follow_ups: tuple[str, ...]
    not_own_cancer: tuple[str, ...]       # cancer words that are not the patient's history
    criteria: tuple[str, ...]             # {system}: lung | breast
    lr_meaning: tuple[str, ...]           # {lr}: a written Lung-RADS category
    br_meaning: tuple[str, ...]           # {br}: a written BI-RADS category, {c}: the bare category, {exam}
    screening_turn: tuple[str, ...]       # a second turn that says the CT was a screening one
    typo_words: tuple[str, ...] = ("nodule", "solid", "smoker", "screening", "mammogram")


TUNE = Forms(
    male=("{age}M", "{age} yo M", "{age}-year-old man", "M {age}", "{age} y/o male", "{age}yo man"),
    female=("{age}F", "{age} yo F", "{age}-year-old woman", "F {age}", "{age} y/o female", "{age}yo woman"),
    pack_years=("{py} PY", "{py} pack-years", "{py}-pack-year history", "{py} pk-yrs", "{py}py", "{py} pack yrs"),
    ppd=("{ppd} ppd x {yrs} yrs", "{ppd} ppd for {yrs} years", "{ppd} packs a day for {yrs} years",
         "smoked {ppd} ppd x {yrs}y", "{ppd} pk/day x {yrs} yrs", "{ppd} ppd, {yrs} yrs", "smoked for {yrs} yrs, {ppd} ppd"),
    quit=("quit {q} yrs ago", "quit {q} years ago", "stopped smoking {q} years ago", "quit smoking {q}y ago"),
    never=("never smoker", "non-smoker", "never smoked", "lifelong nonsmoker", "denies tobacco"),
    current=("current smoker", "still smokes", "active smoker"),
    size=("{mm} mm", "{mm}mm", "~{mm} mm", "{cm} cm"),
    axes=("{a}x{b} mm", "{a} x {b} mm"),
    solid=("solid nodule", "solid pulmonary nodule", "SSN", "solid lung nodule"),
    ground_glass=("GGN", "pure ground-glass nodule", "GGO", "ground glass nodule", "nonsolid nodule"),
    part_solid=("part-solid nodule with a {c} mm solid component", "PSN, solid part {c} mm",
                "subsolid nodule with solid bit ~{c} mm", "part solid nodule (solid component {c}mm)",
                "PSN w/ {c} mm solid"),
    subsolid=("subsolid nodule", "sub-solid nodule"),
    incidental=("on CTPA", "on CT A/P for diverticulitis", "on cardiac CT", "incidentally on CTA",
                "on a CT abdomen/pelvis for kidney stones", "on trauma CT", "on CT chest for PE"),
    screening=("on LDCT", "on screening CT", "on lung cancer screening LDCT", "on his baseline LDCT"),
    upper=("in the RUL", "in the LUL", "right upper lobe"),
    other_lobe=("in the RLL", "in the LLL", "right middle lobe"),
    cancer=("hx of resected stage III melanoma", "h/o breast ca s/p mastectomy", "known colon cancer",
            "lymphoma in remission", "prior renal cell carcinoma", "hx of Hodgkin's", "NSCLC s/p lobectomy"),
    immuno=("s/p OHT on tacrolimus and MMF", "renal transplant on cyclosporine", "HIV+", "on azathioprine",
            "kidney transplant recipient", "on MTX for RA"),
    ask=("f/u?", "follow-up?", "next step?", "what do we do?", "mgmt?", "rec?"),
    growth=("previously {p} mm, now {n} mm", "previously seen {p} mm nodule now measures {n} mm",
            "grown from {p} to {n} mm"),
    birads=("BR{c}", "BR {c}", "BI-RADS {c}", "birads {c}"),
    breast_exam=("on screening mammo", "on US", "on diagnostic mammogram", "on breast US"),
    lung_rads=("LR {c}", "LR{c}", "Lung-RADS {c}", "lungrads {c}"),
    eligible=("eligible for LCS?", "eligible for lung cancer screening?", "does he qualify for LDCT screening?",
              "should we screen for lung cancer?"),
    breast_eligible=("should she be screened with mammography?", "eligible for breast cancer screening?"),
    follow_ups=("ok and when do we rescan?", "so f/u?", "and?", "ok so what's the plan?"),
    not_own_cancer=("family hx of lung cancer", "no hx of malignancy", "mother had breast cancer",
                    "no known cancer"),
    criteria=("who is eligible for {system} cancer screening per USPSTF?", "USPSTF {system} screening criteria?",
              "what are the criteria for {system} cancer screening?"),
    lr_meaning=("what does {lr} mean?", "{lr} on LDCT, mgmt?", "meaning of {lr}?",
                "{c} on a lung screening report, what does it mean?"),
    br_meaning=("{br} {exam}, what next?", "category {c} {exam} - what does it mean?",
                "what does cat {c} mean on a screening mammogram?"),
    screening_turn=("it was on his annual screening LDCT", "both were screening LDCTs", "this was a lung screening CT"),
)

HELD_OUT = Forms(
    male=("{age} M", "{age}yo male", "{age} year old gentleman", "male, {age}", "{age}-yr-old man"),
    female=("{age} F", "{age}yo female", "{age} year old lady", "female, {age}", "{age}-yr-old woman"),
    pack_years=("{py} pack-yr", "{py} p-y", "{py} PYs", "PY: {py}", "{py} pack year history"),
    ppd=("{ppd} PPD x{yrs} years", "{ppd} packs/day for {yrs} yrs", "{yrs} yrs x {ppd} ppd",
         "{ppd} pack per day over {yrs} years"),
    quit=("quit {q} years back", "ex-smoker, quit {q} yrs ago", "gave up smoking {q} years ago",
          "smoke-free for {q} years"),
    never=("never-smoker", "nonsmoker", "has never smoked", "no smoking history"),
    current=("currently smokes", "smoker", "smokes daily"),
    size=("{mm}-mm", "{mm} millimeter", "approx. {mm} mm", "{cm}cm"),
    axes=("{a}×{b} mm", "{a} by {b} mm"),
    solid=("solid nodular opacity", "solid nodule", "noncalcified solid nodule"),
    ground_glass=("pure GGN", "ground-glass opacity", "non-solid nodule", "pGGN"),
    part_solid=("mixed-density nodule, solid component {c} mm", "part-solid nodule, solid portion of {c} mm",
                "PSN with {c} mm solid component"),
    subsolid=("subsolid lesion", "subsolid opacity"),
    incidental=("seen on coronary CTA", "found on CT abd/pelvis for appendicitis", "on a CTA chest for dissection",
                "noted on a CT for cough", "on CT C/A/P for trauma"),
    screening=("on annual screening LDCT", "on low-dose screening CT", "on baseline lung screening CT"),
    upper=("LUL", "left upper lobe", "RUL apical"),
    other_lobe=("RLL", "lingula", "left lower lobe"),
    cancer=("history of metastatic melanoma", "treated lymphoma", "s/p lobectomy for adenocarcinoma",
            "breast cancer survivor", "known prostate cancer"),
    immuno=("lung tx on tacrolimus", "on mycophenolate", "AIDS", "on chemo", "liver transplant on sirolimus"),
    ask=("f/u interval?", "what f/u?", "recs?", "follow up?"),
    growth=("was {p} mm, now {n} mm", "increased from {p} mm to {n} mm", "prior {p} mm, currently {n} mm"),
    birads=("BR-{c}", "Bi-RADS {c}", "BIRADS {c}"),
    breast_exam=("on mammo", "on breast ultrasound", "on tomosynthesis", "on u/s"),
    lung_rads=("LR-{c}", "Lung RADS {c}", "lung-rads {c}"),
    eligible=("qualifies for lung screening?", "eligible for annual LDCT?", "candidate for lung cancer screening?"),
    breast_eligible=("should she start screening mammograms?", "eligible for breast screening?"),
    follow_ups=("ok, when do we rescan?", "and so f/u?", "right, and the interval?"),
    not_own_cancer=("father died of lung ca", "denies any cancer history", "sister with breast cancer",
                    "negative for malignancy on prior bx"),
    criteria=("who qualifies for {system} screening per USPSTF?", "{system} cancer screening recommendations?",
              "USPSTF criteria for {system} cancer screening?"),
    lr_meaning=("{lr} - meaning?", "explain {lr}", "{lr}: what is the management?",
                "{c} on her screening LDCT report - meaning?"),
    br_meaning=("{br} {exam} - next step?", "cat {c} {exam}, meaning?", "what is category {c} in breast imaging?"),
    screening_turn=("that was her yearly LDCT", "both scans were screening LDCTs", "it's from the lung screening program"),
)

SETS = {"tune": (TUNE, 20260), "held_out": (HELD_OUT, 91117)}


class Gen:
    def __init__(self, forms: Forms, seed: int) -> None:
        self.f, self.r = forms, random.Random(seed)

    def pick(self, options: tuple[str, ...], **slots: Any) -> str:
        return self.r.choice(options).format(**slots)

    def person(self, age: int | None = None, sex: str | None = None) -> tuple[str, int, str]:
        age = age if age is not None else self.r.randint(35, 85)
        sex = sex or self.r.choice(("male", "female"))
        return self.pick(self.f.male if sex == "male" else self.f.female, age=age), age, sex

    def smoking(self, kind: str | None = None) -> tuple[str, dict[str, Any]]:
        """A smoking history in words and the frame fields it states."""
        kind = kind or self.r.choice(("py", "ppd", "former", "never", "current"))
        if kind == "never":
            return self.pick(self.f.never), {"smoking": "never"}
        if kind == "current":
            return self.pick(self.f.current), {"smoking": "current"}
        if kind == "ppd":
            ppd = self.r.choice((0.5, 1, 1.5, 2, 3))
            yrs = self.r.choice((10, 15, 20, 25, 30, 40, 45))
            written = {0.5: self.r.choice(("1/2", "0.5")), 1: "1", 1.5: "1.5", 2: "2", 3: "3"}[ppd]
            text = self.pick(self.f.ppd, ppd=written, yrs=yrs)
            return text, {"pack_years": ppd * yrs}
        py = self.r.choice((5, 8, 12, 15, 20, 25, 30, 40, 50, 60))
        text = self.pick(self.f.pack_years, py=py)
        if kind == "former":
            q = self.r.choice((3, 6, 10, 12, 16, 20, 25))
            return f"{text}, {self.pick(self.f.quit, q=q)}", {"pack_years": float(py), "smoking": "former",
                                                               "quit_years": float(q)}
        return text, {"pack_years": float(py)}

    def size(self, mm: float) -> tuple[str, float]:
        if self.r.random() < 0.25:
            a = mm + self.r.choice((1, 2))
            b = 2 * mm - a
            if b > 0:
                return self.pick(self.f.axes, a=f"{a:g}", b=f"{b:g}"), mm
        form = self.r.choice(self.f.size)
        if "{cm}" in form and mm >= 10 and (mm * 10) % 10 == 0:
            return form.format(cm=f"{mm / 10:g}"), mm
        return form.replace("{cm}", "{mm}").replace("cm", "mm").format(mm=f"{mm:g}"), mm

    def typo(self, text: str) -> str:
        words = [w for w in self.f.typo_words if w in text]
        if not words or self.r.random() > 0.15:
            return text
        w = self.r.choice(words)
        i = self.r.randint(1, len(w) - 3)
        return text.replace(w, w[:i] + w[i + 1] + w[i] + w[i + 2:], 1)

    def join(self, parts: list[str], ask: str) -> str:
        parts = [p for p in parts if p]
        if self.r.random() < 0.5:
            self.r.shuffle(parts)
        sep = self.r.choice((", ", "; ", ". ", ", ", " - "))
        text = sep.join(parts) + (" " if sep != ". " else ". ") + ask
        if self.r.random() < 0.15:  # the question first, the case after it
            text = f"{ask[:-1] if ask.endswith('?') else ask} for {sep.join(parts)}?"
        if self.r.random() < 0.15:
            text = self.r.choice(("quick q: ", "Hi - ", "pls advise: ", "question: ", "radiology q - ")) + text
        if self.r.random() < 0.1:
            text = text.lower()
        return self.typo(text)


def _risk(smoke: dict[str, Any], upper: bool) -> tuple[str | None, bool]:
    """(risk, decided) the reader must give for this history (patient first, nodule features second)."""
    py, status = smoke.get("pack_years"), smoke.get("smoking")
    if status == "current" and py is None or (py is not None and py >= 10):
        return "high", True
    low = status == "never" or (py is not None and py < 10)
    if low:
        return (None, False) if upper else ("low", True)
    return None, False


def fleischner_solid(g: Gen) -> Item:
    who, age, _ = g.person(age=g.r.randint(36, 49))  # under 50: screening is not plausible, so incidental
    mm = g.r.choice((3, 4, 5, 6, 7, 8, 9, 11, 12, 15, 20))
    size, mm = g.size(mm)
    smoke, fields = g.smoking(g.r.choice(("py", "ppd", "never", "current", "former")))
    upper = g.r.random() < 0.3
    lobe = g.pick(g.f.upper if upper else g.f.other_lobe)
    finding = f"{size} {g.pick(g.f.solid)} {lobe}"
    exam = g.pick(g.f.incidental) if g.r.random() < 0.5 else ""
    risk, _ = _risk(fields, upper)
    exp = {"intent": "followup", "system": "fleischner", "size_mm": mm, "nodule_type": "solid", "age": age,
           "setting": "incidental", "risk": risk, "known_cancer": False, "immunocompromised": False, **fields}
    return Item("fleischner solid", g.join([who, smoke, f"{finding} {exam}".strip()], g.pick(g.f.ask)), exp)


def fleischner_ground_glass(g: Gen) -> Item:
    who, age, _ = g.person()
    size, mm = g.size(g.r.choice((4, 5, 6, 8, 10, 12, 15, 18)))
    exam = g.pick(g.f.incidental)
    exp = {"intent": "followup", "system": "fleischner", "size_mm": mm, "nodule_type": "ground_glass", "age": age,
           "setting": "incidental"}
    return Item("fleischner ground-glass", g.join([who, f"{size} {g.pick(g.f.ground_glass)} {exam}"],
                                                  g.pick(g.f.ask)), exp)


def fleischner_part_solid(g: Gen) -> Item:
    who, age, _ = g.person()
    size, mm = g.size(g.r.choice((8, 10, 12, 14, 16, 20)))
    c = g.r.choice((2, 3, 4, 5, 6))
    exp = {"intent": "followup", "system": "fleischner", "size_mm": mm, "nodule_type": "part_solid", "solid_mm": c,
           "setting": "incidental", "age": age}
    text = f"{size} {g.pick(g.f.part_solid, c=c)} {g.pick(g.f.incidental)}"
    return Item("fleischner part-solid", g.join([who, text], g.pick(g.f.ask)), exp)


def fleischner_subsolid(g: Gen) -> Item:
    who, age, _ = g.person()
    size, mm = g.size(g.r.choice((7, 9, 11, 13, 17)))
    exp = {"intent": "followup", "system": "fleischner", "size_mm": mm, "nodule_type": "subsolid",
           "missing": ["nodule type"], "age": age}
    return Item("fleischner subsolid (asked)", g.join([who, f"{size} {g.pick(g.f.subsolid)} {g.pick(g.f.incidental)}"],
                                                      g.pick(g.f.ask)), exp)


def fleischner_excluded(g: Gen) -> Item:
    who, age, _ = g.person()
    size, mm = g.size(g.r.choice((4, 6, 7, 9, 12)))
    cancer = g.r.random() < 0.5
    history = g.pick(g.f.cancer if cancer else g.f.immuno)
    exp = {"intent": "followup", "system": "fleischner", "size_mm": mm, "age": age,
           ("known_cancer" if cancer else "immunocompromised"): True}
    return Item("fleischner excluded", g.join([who, history, f"{size} {g.pick(g.f.solid)} {g.pick(g.f.incidental)}"],
                                              g.pick(g.f.ask)), exp)


def lung_rads_baseline(g: Gen) -> Item:
    who, age, _ = g.person(age=g.r.randint(50, 80))
    smoke, fields = g.smoking(g.r.choice(("py", "ppd")))
    size, mm = g.size(g.r.choice((3, 5, 6, 7, 8, 10, 12, 16)))
    exp = {"intent": "followup", "system": "lung_rads", "size_mm": mm, "nodule_type": "solid", "setting": "screening",
           "status": "baseline", "age": age, **fields}
    if g.r.random() < 0.3:  # "baseline LDCT for a 60M 30 PY: 6 mm solid nodule"
        exam = g.pick(g.f.screening).removeprefix("on ").removeprefix("his ").removeprefix("a ")
        text = g.typo(f"{exam} for a {who}, {smoke}: {size} {g.pick(g.f.solid)}. {g.pick(g.f.ask)}")
        return Item("lung-rads baseline", text, exp)
    return Item("lung-rads baseline", g.join([who, smoke, f"{size} {g.pick(g.f.solid)} {g.pick(g.f.screening)}"],
                                             g.pick(g.f.ask)), exp)


def lung_rads_growing(g: Gen) -> Item:
    who, age, _ = g.person(age=g.r.randint(50, 80))
    p = g.r.choice((4, 5, 6, 7, 8))
    n = p + g.r.choice((2, 3, 4))
    growth = g.pick(g.f.growth, p=p, n=n)
    exp = {"intent": "followup", "system": "lung_rads", "size_mm": n, "status": "growing", "setting": "screening",
           "age": age}
    text = f"{g.pick(g.f.screening)} {growth}"
    return Item("lung-rads growing", g.join([who, text], g.pick(g.f.ask)), exp)


def lung_rads_meaning(g: Gen) -> Item:
    c = g.r.choice(("0", "1", "2", "3", "4A", "4B", "4X"))
    forms = g.f.lr_meaning if c == "4X" else tuple(f for f in g.f.lr_meaning if not f.startswith("{c}"))
    text = g.pick(forms, lr=g.pick(g.f.lung_rads, c=c), c=c)
    return Item("lung-rads meaning", g.typo(text), {"intent": "category", "system": "lung_rads", "category": c})


def birads_meaning(g: Gen) -> Item:
    c = g.r.choice(("0", "1", "2", "3", "4", "4A", "4B", "4C", "5", "6"))
    text = g.pick(g.f.br_meaning, br=g.pick(g.f.birads, c=c), c=c, exam=g.pick(g.f.breast_exam))
    return Item("bi-rads meaning", g.typo(text), {"intent": "category", "system": "birads", "category": c})


def birads_finding(g: Gen) -> Item:
    who, age, _ = g.person(age=g.r.randint(30, 75), sex="female")
    c = g.r.choice(("2", "3", "4A", "4B", "5"))
    size, mm = g.size(g.r.choice((6, 8, 9, 12, 15)))
    mass = g.r.choice(("oval circumscribed mass", "irregular mass", "hypoechoic mass", "mass at 2 o'clock"))
    exp = {"system": "birads", "category": c, "age": age}
    return Item("bi-rads finding", g.join([f"{g.pick(g.f.birads, c=c)} {g.pick(g.f.breast_exam)} - {size} {mass}", who],
                                          g.pick(g.f.ask)), exp)


def uspstf_lung(g: Gen) -> Item:
    who, age, _ = g.person(age=g.r.randint(45, 85))
    smoke, fields = g.smoking(g.r.choice(("py", "ppd", "former", "never")))
    exp = {"intent": "screening", "system": "uspstf_lung", "age": age, **fields}
    return Item("uspstf lung", g.join([who, smoke], g.pick(g.f.eligible)), exp)


def uspstf_breast(g: Gen) -> Item:
    who, age, _ = g.person(age=g.r.randint(35, 80), sex="female")
    return Item("uspstf breast", g.join([who], g.pick(g.f.breast_eligible)),
                {"intent": "screening", "system": "uspstf_breast", "age": age})


def turns(g: Gen) -> Item:
    who, age, _ = g.person(age=g.r.randint(36, 49))
    size, mm = g.size(g.r.choice((5, 6, 7)))
    first = g.join([who, f"{size} {g.pick(g.f.solid)} {g.pick(g.f.incidental)}"], g.pick(g.f.ask))
    kind = g.r.choice(("smoking", "plain", "screening"))
    if kind == "smoking":
        smoke, fields = g.smoking(g.r.choice(("py", "ppd", "never")))
        risk, _ = _risk(fields, False)
        return Item("follow-up turn", smoke, {"intent": "followup", "system": "fleischner", "size_mm": mm,
                                              "risk": risk, **fields}, [first])
    if kind == "screening":
        text = g.pick(g.f.screening_turn)
        return Item("follow-up turn", text, {"intent": "followup", "system": "lung_rads", "size_mm": mm,
                                             "setting": "screening"}, [first])
    return Item("follow-up turn", g.pick(g.f.follow_ups), {"intent": "followup", "system": "fleischner",
                                                            "size_mm": mm, "age": age}, [first])


def not_own_cancer(g: Gen) -> Item:
    who, age, _ = g.person()
    size, mm = g.size(g.r.choice((4, 6, 7, 9)))
    exp = {"intent": "followup", "system": "fleischner", "size_mm": mm, "known_cancer": False,
           "immunocompromised": False, "age": age}
    return Item("cancer words, not a history", g.join([who, g.pick(g.f.not_own_cancer),
                                                       f"{size} {g.pick(g.f.solid)} {g.pick(g.f.incidental)}"],
                                                      g.pick(g.f.ask)), exp)


def criteria(g: Gen) -> Item:
    system = g.r.choice(("lung", "breast"))
    return Item("screening criteria", g.typo(g.pick(g.f.criteria, system=system)),
                {"intent": "screening", "system": f"uspstf_{system}", "missing": []})


CELLS: tuple[Callable[[Gen], Item], ...] = (fleischner_solid, fleischner_ground_glass, fleischner_part_solid,
                                            fleischner_subsolid, fleischner_excluded, lung_rads_baseline,
                                            lung_rads_growing, lung_rads_meaning, birads_meaning, birads_finding,
                                            uspstf_lung, uspstf_breast, turns, not_own_cancer, criteria)


def generate(n: int, which: str = "tune") -> list[Item]:
    """``n`` items from the ``which`` form set, cells in turn (deterministic)."""
    forms, seed = SETS[which]
    g = Gen(forms, seed)
    return [CELLS[i % len(CELLS)](g) for i in range(n)]


def read(item: Item) -> dict[str, Any]:
    """The frame the rules alone (no model) read for ``item``, as a dict of the scored fields."""
    from agent.frame import read_case

    previous = None
    for q in item.history:
        previous = read_case(q, None, previous)
    frame = read_case(item.question, None, previous)
    return {k: getattr(frame, k) for k in FIELDS}


def wrong_fields(item: Item, got: dict[str, Any]) -> list[str]:
    out = []
    for key, want in item.expected.items():
        have = got.get(key)
        if key == "missing":
            if (not set(want) <= set(have or [])) or (want == [] and have):
                out.append(key)
        elif isinstance(want, int | float) and not isinstance(want, bool) and isinstance(have, int | float):
            if abs(float(want) - float(have)) > 0.05:
                out.append(key)
        elif have != want:
            out.append(key)
    return out


def score(items: list[Item]) -> dict[str, Any]:
    """Frame accuracy overall, per cell and per field, with the failures."""
    per_cell: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_field: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    failures = []
    for item in items:
        got = read(item)
        bad = wrong_fields(item, got)
        per_cell[item.cell][0] += not bad
        per_cell[item.cell][1] += 1
        for key in item.expected:
            per_field[key][0] += key not in bad
            per_field[key][1] += 1
        if bad:
            failures.append((item, {k: (item.expected[k], got.get(k)) for k in bad}))
    right = sum(c[0] for c in per_cell.values())
    return {"accuracy": right / max(1, len(items)), "n": len(items), "per_cell": dict(per_cell),
            "per_field": dict(per_field), "failures": failures}


def _report(name: str, result: dict[str, Any], show: int) -> None:
    print(f"\n## {name}: frame accuracy {result['accuracy']:.4f} over {result['n']} items")
    print("\n| cell | right | n | accuracy |\n|---|---|---|---|")
    for cell, (ok, n) in sorted(result["per_cell"].items()):
        print(f"| {cell} | {ok} | {n} | {ok / n:.3f} |")
    print("\n| field | right | n | accuracy |\n|---|---|---|---|")
    for key, (ok, n) in sorted(result["per_field"].items()):
        print(f"| {key} | {ok} | {n} | {ok / n:.3f} |")
    if result["failures"]:
        print(f"\nfailures ({len(result['failures'])}, first {show}):")
        for item, diff in result["failures"][:show]:
            hist = f" [after: {item.history[0]!r}]" if item.history else ""
            print(f"- {item.question!r}{hist}: " + "; ".join(f"{k} expected {w!r}, read {h!r}"
                                                              for k, (w, h) in diff.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="items per form set")
    ap.add_argument("--set", choices=("tune", "held_out", "both"), default="both")
    ap.add_argument("--show", type=int, default=20, help="failures to print per set")
    args = ap.parse_args(argv)
    for name in (("tune", "held_out") if args.set == "both" else (args.set,)):
        _report(name, score(generate(args.n, name)), args.show)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
