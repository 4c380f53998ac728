"""MMLU (Hendrycks et al.) as 4-way multiple choice: its original CSV layout and k-shot prompts.

Read from a local copy: ``ROOT/dev/<subject>_dev.csv`` and ``ROOT/<split>/<subject>_<split>.csv``,
rows ``question, A, B, C, D, answer`` without a header. A missing folder or a malformed row
stops with the path and the layout expected. Prompts are k-shot with the subject's first k dev
questions, in Hendrycks et al.'s format (ASSUMED; docs/paper.md).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch

CHOICES = "ABCD"
LAYOUT = (
    "expected ROOT/dev/<subject>_dev.csv and ROOT/<split>/<subject>_<split>.csv, each row "
    "question,A,B,C,D,answer (no header; answer one of A-D), as in the original MMLU release"
)


class MMLUError(ValueError):
    pass


@dataclass(frozen=True)
class Question:
    subject: str
    question: str
    options: tuple[str, str, str, str]
    answer: int  # 0..3


def read_split(root: str | Path, split: str) -> dict[str, list[Question]]:
    """Subject -> questions of ``split``, refusing a missing folder or a malformed row."""
    folder = Path(root) / split
    if not folder.is_dir():
        raise MMLUError(f"MMLU folder {folder} does not exist; {LAYOUT}")
    files = sorted(folder.glob(f"*_{split}.csv"))
    if not files:
        raise MMLUError(f"MMLU folder {folder} has no *_{split}.csv files; {LAYOUT}")
    subjects = {}
    for path in files:
        rows = []
        with path.open(newline="", encoding="utf-8") as f:
            for i, row in enumerate(csv.reader(f)):
                if len(row) != 6 or row[5].strip() not in CHOICES:
                    raise MMLUError(f"{path} row {i + 1} is malformed ({row[:6]}); {LAYOUT}")
                subject = path.name.removesuffix(f"_{split}.csv")
                rows.append(Question(subject, row[0], tuple(row[1:5]), CHOICES.index(row[5])))
        subjects[path.name.removesuffix(f"_{split}.csv")] = rows
    return subjects


def format_question(q: Question, with_answer: bool) -> str:
    text = q.question + "".join(f"\n{c}. {o}" for c, o in zip(CHOICES, q.options, strict=True))
    return text + "\nAnswer:" + (f" {CHOICES[q.answer]}\n\n" if with_answer else "")


def prompt(q: Question, shots: list[Question]) -> str:
    subject = q.subject.replace("_", " ")
    head = f"The following are multiple choice questions (with answers) about {subject}.\n\n"
    return head + "".join(format_question(s, True) for s in shots) + format_question(q, False)


def build_prompts(root, split: str, shots: int, limit: int | None = None):
    """Prompts and labels of ``split``, each with its subject's first ``shots`` dev questions."""
    questions = read_split(root, split)
    dev = read_split(root, "dev") if shots else {}
    prompts, labels = [], []
    for subject, rows in questions.items():
        examples = dev.get(subject, [])
        if len(examples) < shots:
            raise MMLUError(f"{subject}: {len(examples)} dev questions for {shots}-shot prompts")
        for q in rows:
            prompts.append(prompt(q, examples[:shots]))
            labels.append(q.answer)
    if limit is not None:  # a fixed, subject-balanced subset for quick runs
        order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(0))[:limit]
        prompts, labels = [prompts[i] for i in order], [labels[i] for i in order]
    return prompts, torch.tensor(labels)
