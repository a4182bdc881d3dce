"""The tasks the transformers backend converts: each names the transformers mapping that
picks the model class for a model type, and the output Optimum names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    mapping: str  # in transformers.models.auto.modeling_auto
    auto_class: str  # for people: the Auto class that loads it
    outputs: tuple[str, ...]  # Optimum's names, picked from the ModelOutput


TASKS = {
    "text-classification": Task("text-classification",
                                "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
                                "AutoModelForSequenceClassification", ("logits",)),
    "feature-extraction": Task("feature-extraction", "MODEL_MAPPING_NAMES", "AutoModel",
                               ("last_hidden_state",)),
    "audio-classification": Task("audio-classification",
                                 "MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES",
                                 "AutoModelForAudioClassification", ("logits",)),
    "image-classification": Task("image-classification",
                                 "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
                                 "AutoModelForImageClassification", ("logits",)),
}
