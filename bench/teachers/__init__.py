"""The teacher of a task: trained here (once, cached), loaded from files, or offline logits.

``config`` (``[teacher]`` and one dataclass per source) · ``load`` (one loader per source) ·
``cache`` (the trained-teacher cache) · ``train`` (members, specialist systems) ·
``evaluate`` (outputs once per split, the teacher's evaluation) · ``prepared`` (its
result, :class:`PreparedTeacher`) · ``analysis`` (what the report
says about it).

Sources: ``train`` — K members of ``family``/``arch`` trained on the task (member k with seed
``seed + k``), cached; ``checkpoint`` — a kdbench ensemble file (the cache format);
``checkpoints`` — one ``state_dict`` per member; ``logits`` — offline outputs aligned with the
rows of the task's data (cost columns NaN unless ``family``/``arch`` are given).
``kind = "specialists"``: a generalist plus specialists on clusters of the classes it
confuses, combined by :class:`kdcore.SpecialistCombiner`; the generalist alone is kept as
:attr:`PreparedTeacher.reference`, the teacher distilled students are compared against.
"""

from bench.config.teacher import TeacherConfig
from bench.teachers.analysis import specialist_summary, teacher_warnings
from bench.teachers.cache import teacher_cache_key
from bench.teachers.evaluate import SPLITS, prepare_teacher
from bench.teachers.load import LoadedTeacher, load_teacher
from bench.teachers.prepared import PreparedTeacher

__all__ = [
    "SPLITS",
    "LoadedTeacher",
    "PreparedTeacher",
    "TeacherConfig",
    "load_teacher",
    "prepare_teacher",
    "specialist_summary",
    "teacher_cache_key",
    "teacher_warnings",
]
