"""Instruction phrasings in users' own words, for training the default model's task adapters, and a list held
back from training to measure how well the adapters follow wordings they never saw.

The registry tasks (:mod:`mmembed.instructions`) have four paraphrases each; users type their own. The
modality recipe (:mod:`mmembed.train.modality`) gives a share of its pairs one of :data:`TRAIN` as a free-text
instruction. :data:`HELD_OUT` is never trained on (a test asserts the two lists are disjoint, also after
normalising case and punctuation); ``benchmarks/bench_phrasings.py`` measures the share of queries that
reach the asked modality with each held-back phrasing. The held-back list was committed before the model that
is measured on it was trained, and must not be edited to suit a result.
"""

from __future__ import annotations

import re

#: kind -> phrasings trained on (free text, as users write them: questions, imperatives, fragments)
TRAIN: dict[str, tuple[str, ...]] = {
    "text->image": (
        "Find a picture of this.",
        "Find an image of the following.",
        "Search for an image showing this.",
        "Get me a photo of this.",
        "Look for a drawing of the described thing.",
        "Which picture shows this?",
        "I need an illustration of this.",
        "Find clip art of this.",
        "Return images, not text, that match this description.",
        "Image search:",
        "picture of",
        "Show an image for this caption.",
        "Retrieve the photo that this sentence describes.",
        "Find the icon that represents this.",
        "Find a graphic matching this text.",
        "Look up an image that depicts the following words.",
        "Find a visual for this phrase.",
        "Fetch the picture described below.",
        "What does this look like? Find an image.",
        "Match this text to an image.",
        "Pick the image that fits this label.",
        "Search images for this keyword.",
        "Find the artwork described here.",
        "Find the sketch that matches this description.",
        "Retrieve a matching picture for the query.",
        "Give me a drawing of it.",
        "Locate an image of this object.",
        "Find pictures related to this word.",
        "Which image goes with this caption?",
        "I'm looking for an image: ",
        "Find the figure described by this text.",
        "Search the photos for this.",
        "Find a cartoon of this.",
        "Illustrate this with an image from the collection.",
        "Return the best matching image.",
        "text to image search",
        "Find me an image where you can see this.",
        "Get the icon for this name.",
        "Find the emoji or drawing that shows this.",
        "Search for a visual depiction of this concept.",
    ),
    "image->text": (
        "What is this a picture of?",
        "Describe this image.",
        "Find the caption for this picture.",
        "Find text about this image.",
        "Which label fits this drawing?",
        "Name what is shown.",
        "Find the description of this photo.",
        "What does this image show? Find the words.",
        "Return text, not images, that describe this.",
        "Find the title of this picture.",
        "caption for",
        "Get the name of the thing in this image.",
        "Look up a text that explains this picture.",
        "Find the word for this icon.",
        "Retrieve a label for the image.",
        "Tell me what this is.",
        "Which caption goes with this image?",
        "Find the alt text for this image.",
        "Search captions for this picture.",
        "image to text search",
        "Identify this drawing by its name.",
        "Find a sentence describing what you see.",
        "Match this picture to its caption.",
        "What is drawn here?",
        "Find the written description of this illustration.",
        "Retrieve the text that names this object.",
        "Give me the caption.",
        "Find the keyword that describes this picture.",
        "Which text describes this artwork?",
        "Find the label of this clip art.",
    ),
    "text->text": (
        "Find text similar to this.",
        "Find the passage that answers this.",
        "Search the documents for this question.",
        "Find the matching sentence.",
        "Look up the text for this phrase.",
        "Which answer fits this question?",
        "Find a translation of this into English.",
        "Find the English name for this.",
        "Return text, not images, for this query.",
        "text search",
        "Find the paragraph about this.",
        "Retrieve written documents relevant to the query.",
        "Find a caption with the same meaning.",
        "Look up the definition.",
        "Find related notes.",
        "Search the text for this.",
        "Which document talks about this?",
        "Find the FAQ entry that answers this.",
        "Find articles about this topic.",
        "Get the written answer to this.",
    ),
}

#: kind -> phrasings held back from training (measured, never trained on)
HELD_OUT: dict[str, tuple[str, ...]] = {
    "text->image": (
        "Find the clip-art drawing that matches",
        "Show me a picture of this",
        "retrieve an image that matches the description",
        "Can you find me a photo of this?",
        "Looking for a picture that shows the following.",
        "Which drawing depicts this?",
        "Get an image for the word below.",
        "Search the pictures for this description.",
        "I want to see an image of this.",
        "Find a visual match for this text.",
    ),
    "image->text": (
        "What's in this picture? Find its caption.",
        "Find the words that describe this drawing.",
        "Which name belongs to this image?",
        "Retrieve a description for this picture.",
        "Label this image.",
        "Find the text that goes with this clip art.",
    ),
    "text->text": (
        "Find the text that means the same as this.",
        "Which passage is about this?",
        "Search written documents for this.",
        "Find the English caption for this phrase.",
    ),
}


def normalise(phrasing: str) -> str:
    """Lower case, letters and digits only, single spaces (for comparing the lists)."""
    return re.sub(r"[^a-z0-9]+", " ", phrasing.lower()).strip()


__all__ = ["HELD_OUT", "TRAIN", "normalise"]
