"""Task instructions: short names for the retrieval tasks users ask for, each with paraphrases.

MM-Embed (and UniIR before it) steer one universal retriever with a natural-language instruction prefixed
to the *query* ("Find me an everyday image that matches the given caption."). Documents never get one.
The generic tasks are ours; the dataset-specific ones follow M-BEIR's first prompt per task.

Every name with ``->`` also has a shell-safe alias with ``-to-`` (``text-to-image``, ``image+text-to-image``):
an unquoted ``>`` in a shell redirects output to a file, so ``--task text->image`` would run task ``text-``.
Both spellings are accepted wherever a task name is; :attr:`Task.name` stays the canonical ``->`` form.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError


@dataclass(frozen=True)
class Task:
    """A retrieval task: what the query is, what should come back, and how to say it to the model."""

    name: str
    query_modality: str
    target_modality: str
    instructions: tuple[str, ...]
    dataset: str | None = None

    @property
    def instruction(self) -> str:
        """The canonical (first) phrasing."""
        return self.instructions[0]

    @property
    def alias(self) -> str:
        """The shell-safe spelling of :attr:`name` (``->`` written ``-to-``), usable unquoted in a shell."""
        return shell_safe(self.name)


_TASKS: dict[str, Task] = {}
_ALIASES: dict[str, str] = {}  # shell-safe alias -> canonical name


def shell_safe(name: str) -> str:
    """``text->image`` -> ``text-to-image``: the task name without the ``>`` a shell takes as a redirect."""
    return name.replace("->", "-to-")


def register_task(task: Task) -> Task:
    if task.name in _TASKS or task.name in _ALIASES:
        raise ValueError(f"task {task.name!r} is already registered")
    if not task.instructions:
        raise ValueError(f"task {task.name!r} needs at least one instruction")
    alias = shell_safe(task.name)
    if alias != task.name and (alias in _TASKS or alias in _ALIASES):
        raise ValueError(f"task {task.name!r}: its shell-safe alias {alias!r} is already registered")
    _TASKS[task.name] = task
    if alias != task.name:
        _ALIASES[alias] = task.name
    return task


def _t(name: str, q: str, t: str, *instructions: str, dataset: str | None = None) -> None:
    register_task(Task(name, q, t, tuple(instructions), dataset))


# ---- generic tasks (what users name) ---------------------------------------------------------------
_t("text->image", "text", "image",
   "Retrieve an image that matches the given caption.",
   "Find an image that the following description depicts.",
   "Which image best fits this text?",
   "Show me a picture of what this text describes.")
_t("image->text", "image", "text",
   "Find a caption that describes the given image.",
   "Retrieve the text that best describes this image.",
   "Which description matches this picture?",
   "Write-up wanted: find the caption for this image.")
_t("image->image", "image", "image",
   "Find an image that looks similar to the given image.",
   "Retrieve pictures that resemble this one.",
   "Which image is most like the provided image?",
   "Find visually similar images.")
_t("text->text", "text", "text",
   "Retrieve passages that are relevant to the given text.",
   "Find text that is similar to the following text.",
   "Which passage matches this text?",
   "Retrieve related documents for this text.")
_t("question->passage", "text", "text",
   "Given a question, retrieve passages that answer the question.",
   "Retrieve a passage that provides an answer to the following question.",
   "Find the paragraph that answers this question.",
   "Which passage best answers the question?")
_t("text->image+text", "text", "image+text",
   "Retrieve an image with a description that matches the given text.",
   "Find an image-text document relevant to this query.",
   "Which illustrated passage answers this query?",
   "Find a document with a picture that fits this text.")
_t("image->image+text", "image", "image+text",
   "Retrieve a document with an image and text about the given image.",
   "Find an illustrated passage about this picture.",
   "Which image-text document is about the provided image?",
   "Find a page that shows and describes this image.")
_t("image+text->image", "image+text", "image",
   "Retrieve an image that looks like the given image modified as the text says.",
   "Find a picture like this one but with the described change.",
   "Which image matches the reference image and the requested modification?",
   "Find an image that combines the provided image with the text's changes.")
_t("image+text->text", "image+text", "text",
   "Retrieve a passage that answers the question about the given image.",
   "Find text that answers this question about the picture.",
   "Which paragraph answers the query about this image?",
   "Find a passage that explains what is asked about the image.")
_t("image+text->image+text", "image+text", "image+text",
   "Retrieve an image-text document that answers the question about the given image.",
   "Find an illustrated passage relevant to this image and question.",
   "Which image-description pair answers the query about this image?",
   "Find a page with a picture that matches this image and question.")

# ---- M-BEIR dataset-specific tasks (UniIR prompt 1 first) --------------------------------------------
_t("mbeir:visualnews:text->image", "text", "image",
   "Identify the news-related image in line with the described event.",
   "Find the news image that matches the described event.",
   "Retrieve a news photo that depicts the described event.",
   "Which news image shows the event in this text?", dataset="VisualNews")
_t("mbeir:mscoco:text->image", "text", "image",
   "Find me an everyday image that matches the given caption.",
   "Retrieve a daily-life photo described by this caption.",
   "Which everyday image fits the caption?",
   "Show an ordinary scene matching this caption.", dataset="MSCOCO")
_t("mbeir:fashion200k:text->image", "text", "image",
   "Based on the following fashion description, retrieve the best matching image.",
   "Find the fashion product image described here.",
   "Which clothing image matches this description?",
   "Retrieve a fashion photo for this product text.", dataset="Fashion200K")
_t("mbeir:webqa:text->text", "text", "text",
   "Retrieve passages from Wikipedia that provide answers to the following question.",
   "Find Wikipedia text that answers this question.",
   "Which Wikipedia passage answers the question?",
   "Retrieve encyclopedia passages answering this question.", dataset="WebQA")
_t("mbeir:edis:text->image+text", "text", "image+text",
   "Find a news image that matches the provided caption.",
   "Retrieve a news photo with headline that fits this caption.",
   "Which news image and headline match the caption?",
   "Find the news picture described by this caption.", dataset="EDIS")
_t("mbeir:webqa:text->image+text", "text", "image+text",
   "Find a Wikipedia image that answers this question.",
   "Retrieve a Wikipedia picture with caption that answers the question.",
   "Which Wikipedia image answers this question?",
   "Find an encyclopedia image relevant to the question.", dataset="WebQA")
_t("mbeir:visualnews:image->text", "image", "text",
   "Find a caption for the news in the given photo.",
   "Retrieve the news caption for this photo.",
   "Which caption describes this news picture?",
   "Find the headline text for the news image.", dataset="VisualNews")
_t("mbeir:mscoco:image->text", "image", "text",
   "Find an image caption describing the following everyday image.",
   "Retrieve a caption for this daily-life photo.",
   "Which caption describes this everyday picture?",
   "Find the text that describes this ordinary scene.", dataset="MSCOCO")
_t("mbeir:fashion200k:image->text", "image", "text",
   "Find a product description for the fashion item in the image.",
   "Retrieve the description of the clothing in this photo.",
   "Which product text describes this fashion item?",
   "Find the catalogue text for this garment.", dataset="Fashion200K")
_t("mbeir:nights:image->image", "image", "image",
   "Find a day-to-day image that looks similar to the provided image.",
   "Retrieve an everyday photo resembling this one.",
   "Which daily-life image looks most like this image?",
   "Find a visually similar ordinary scene.", dataset="NIGHTS")
_t("mbeir:oven:image+text->text", "image+text", "text",
   "Retrieve a Wikipedia paragraph that provides an answer to the given query about the image.",
   "Find the Wikipedia text answering this question about the picture.",
   "Which encyclopedia paragraph answers the query on this image?",
   "Retrieve a passage that answers the question about the image.", dataset="OVEN")
_t("mbeir:infoseek:image+text->text", "image+text", "text",
   "Retrieve a Wikipedia paragraph that provides an answer to the given query about the image.",
   "Find the Wikipedia text answering this question about the picture.",
   "Which encyclopedia paragraph answers the query on this image?",
   "Retrieve a passage that answers the question about the image.", dataset="InfoSeek")
_t("mbeir:fashioniq:image+text->image", "image+text", "image",
   "Find a fashion image that aligns with the reference image and style note.",
   "Retrieve a clothing photo like the reference but changed as the note says.",
   "Which garment image matches the reference and the requested change?",
   "Find the fashion item described by this image and modification.", dataset="FashionIQ")
_t("mbeir:cirr:image+text->image", "image+text", "image",
   "Retrieve a day-to-day image that aligns with the modification instructions of the provided image.",
   "Find an everyday photo like this one with the described modification.",
   "Which daily-life image matches the reference changed as instructed?",
   "Retrieve the image that applies these changes to the reference photo.", dataset="CIRR")
_t("mbeir:oven:image+text->image+text", "image+text", "image+text",
   "Retrieve a Wikipedia image-description pair that provides evidence for the question of this image.",
   "Find a Wikipedia image with description answering the question about this picture.",
   "Which encyclopedia image-text pair supports the query on this image?",
   "Retrieve an illustrated Wikipedia entry relevant to this image question.", dataset="OVEN")
_t("mbeir:infoseek:image+text->image+text", "image+text", "image+text",
   "Retrieve a Wikipedia image-description pair that provides evidence for the question of this image.",
   "Find a Wikipedia image with description answering the question about this picture.",
   "Which encyclopedia image-text pair supports the query on this image?",
   "Retrieve an illustrated Wikipedia entry relevant to this image question.", dataset="InfoSeek")


def get_task(name: str) -> Task:
    """The task registered as ``name`` or under its shell-safe alias (``text->image`` or ``text-to-image``)."""
    if not isinstance(name, str):
        raise InputError(f"task must be a task name (a str, see `mmembed tasks`), got {type(name).__name__}")
    task = _TASKS.get(name) or _TASKS.get(_ALIASES.get(name, ""))
    if task is not None:
        return task
    raise InputError(f"unknown task {name!r}.{_hint(name)}") from None


def _hint(name: str) -> str:
    """Close names, in their shell-safe form; a name cut at ``-`` is what a shell leaves of ``a->b``."""
    key = name.lower()
    close = [t.alias for t in _TASKS.values() if key and (key in t.name.lower() or key in t.alias.lower())]
    close = sorted(close, key=lambda a: (a.startswith("mbeir:"), len(a)))[:5]
    text = f" Did you mean: {', '.join(close)}?" if close else ""
    if name.endswith("-") or name.endswith("-to"):
        text += (" In a shell an unquoted '>' redirects output to a file (check for a stray file named after the "
                 "target), so write the task as text-to-image, image+text-to-image, ... or quote it.")
    return text + " Run `mmembed tasks` to list them."


def list_tasks() -> list[Task]:
    return list(_TASKS.values())


def resolve_instruction(task: str | None = None, instruction: str | None = None) -> str | None:
    """The instruction text for a query: an explicit ``instruction`` wins, else the task's canonical one."""
    if instruction is not None:
        if not isinstance(instruction, str):
            raise InputError(f"instruction must be a str, got {type(instruction).__name__}")
        instruction = instruction.strip()
        return instruction or None
    if task is None:
        return None
    return get_task(task).instruction


def mbeir_task_for(dataset: str, query_modality: str, target_modality: str) -> Task | None:
    """The M-BEIR task for a dataset name and modalities (used by the M-BEIR evaluation loader)."""
    key = f"mbeir:{dataset.lower()}:{query_modality}->{target_modality}"
    return _TASKS.get(key)
