"""The synthetic MagnaTagATune's styles: what each clip renders, and the tags that recipe implies.

Data only, read by :mod:`datamodules.synthetic_mtat`. A :class:`Style` names sound
sources (keys of :data:`datamodules.synthetic_mtat_sounds.SOUND_SOURCES`) and the tags a
listener would give them; voices, tempo and loudness are drawn per clip and add their own
tags (the tables below). Every tag name is one of the release's 188 columns (``tests/test_mtat_format.py``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Style:
    """A recipe: sound sources (keys of SOUND_SOURCES) and the tags a listener would give them."""

    sources: tuple[str, ...]
    tags: tuple[str, ...]  # top-50 tags implied by the instruments/genre
    extra: tuple[str, ...] = ()  # implied tags outside the top 50 (the other 138 columns)
    bpm: tuple[int, int] = (60, 140)
    levels: tuple[float, float, float] = (0.2, 0.5, 0.3)  # P(loud), P(mid), P(quiet)
    voices: tuple[tuple[str, float], ...] = (("none", 1.0),)


# Voices, tempo and loudness are drawn per clip and add their own tags (tables below).
STYLES: dict[str, Style] = {
    "baroque": Style(
        ("harpsichord",), ("harpsichord", "classical", "classic"), ("baroque", "harpsicord", "clasical"),
        levels=(0, 0.6, 0.4)),
    "string_ensemble": Style(
        ("strings",), ("strings", "violin", "classical", "classic"), ("violins", "orchestral", "string"),
        bpm=(50, 120), levels=(0.1, 0.4, 0.5)),
    "cello": Style(
        ("cello",), ("cello", "strings", "classical", "solo"), ("string", "low", "deep"),
        bpm=(45, 90), levels=(0, 0.5, 0.5)),
    "piano": Style(
        ("piano",), ("piano", "classical", "solo"), ("piano solo", "keyboard"),
        bpm=(50, 150), levels=(0.1, 0.5, 0.4)),
    "guitar": Style(
        ("guitar",), ("guitar", "solo"), ("acoustic guitar", "classical guitar", "acoustic", "plucking"),
        levels=(0, 0.5, 0.5)),
    "flute": Style(
        ("flute",), ("flute", "classical"), ("flutes", "woodwind", "wind"),
        bpm=(50, 120), levels=(0, 0.4, 0.6)),
    "harp": Style(
        ("harp",), ("harp", "classical"), ("plucking", "light"),
        bpm=(50, 110), levels=(0, 0.4, 0.6)),
    "indian": Style(
        ("sitar",), ("sitar", "indian"), ("india", "eastern", "drone", "oriental"),
        levels=(0.1, 0.6, 0.3)),
    "opera": Style(
        ("strings",), ("opera", "classical", "strings"), ("operatic", "soprano", "female opera", "orchestra"),
        bpm=(50, 100), levels=(0.4, 0.5, 0.1), voices=(("opera", 1.0),)),
    "choir": Style(
        (), ("choir", "choral", "classical"), ("chorus", "chant", "voices", "monks"),
        bpm=(50, 90), levels=(0.1, 0.5, 0.4), voices=(("choir", 1.0),)),
    "ambient": Style(
        ("synth_pad",), ("ambient", "new age", "synth", "electronic"), ("airy", "space", "spacey", "calm"),
        bpm=(45, 75), levels=(0, 0.3, 0.7)),
    "techno": Style(
        ("synth_square", "drums"), ("techno", "electronic", "synth", "beat", "beats", "drums", "dance"),
        ("electro", "trance", "house", "fast beat"), bpm=(125, 160), levels=(0.7, 0.3, 0)),
    "rock": Style(
        ("distorted_guitar", "drums"), ("rock", "guitar", "drums", "beat"), ("electric guitar", "hard rock", "electric"),
        bpm=(90, 150), levels=(0.7, 0.3, 0), voices=(("male", 0.6), ("none", 0.4))),
    "metal": Style(
        ("metal_guitar", "double_kick"), ("metal", "rock", "guitar", "drums"), ("heavy metal", "heavy", "hard rock", "hard"),
        bpm=(130, 180), levels=(0.9, 0.1, 0), voices=(("male", 0.5), ("none", 0.5))),
    "pop": Style(
        ("piano", "drums"), ("pop", "beat", "drums", "piano"), ("upbeat", "happy"),
        bpm=(90, 130), levels=(0.4, 0.6, 0), voices=(("female", 0.6), ("male", 0.4))),
    "dance": Style(
        ("synth_square", "drums"), ("dance", "pop", "electronic", "synth", "beat", "beats"), ("disco", "house", "upbeat"),
        bpm=(115, 135), levels=(0.6, 0.4, 0), voices=(("female", 0.7), ("none", 0.3))),
    "country": Style(
        ("guitar", "drums"), ("country", "guitar"), ("banjo", "folk", "acoustic"),
        bpm=(80, 130), levels=(0.2, 0.7, 0.1), voices=(("male", 0.8), ("none", 0.2))),
    "weird": Style(
        ("weird",), ("weird", "electronic"), ("strange", "noise", "eerie", "different"),
        levels=(0.3, 0.5, 0.2)),
}
_SUNG = ("vocal", "vocals", "singing", "voice")
VOICE_TAGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # voice -> (top-50 tags, other tags)
    "none": (("no vocals", "no vocal", "no voice"), ("instrumental", "no singing", "no voices", "no singer")),
    "male": (_SUNG + ("male", "man", "male vocal", "male voice"), ("male singer", "man singing", "male vocals", "singer", "men")),
    "female": (
        _SUNG + ("female", "woman", "female vocal", "female voice"),
        ("female singer", "woman singing", "female vocals", "female singing", "girl", "women", "singer"),
    ),
    "choir": (_SUNG, ("voices", "chanting")),
}
VOICE_TAGS["opera"] = VOICE_TAGS["female"]
TEMPO_TAGS = {"fast": (("fast",), ("quick",)), "slow": (("slow",), ("calm",))}
LEVEL_TAGS = {"loud": (("loud",), ()), "quiet": (("quiet", "soft"), ("mellow",))}
