"""Attribute prompts (age, sex, ethnicity, free text), composed the way Reverse Personalization's scripts did:
``"{age}-year-old {ethnicity} {gender word}"`` (gender word by age: baby boy/girl up to 14, boy/girl 15-24, else
man/woman), followed by free text."""

from __future__ import annotations

__all__ = ["SEXES", "ETHNICITIES", "attribute_prompt"]

SEXES = ("any", "female", "male")
ETHNICITIES = ("any", "white", "black", "east asian", "southeast asian", "indian", "middle eastern",
               "latino hispanic")


def _person_word(age: int, sex: str) -> str:
    if sex == "any":
        return "child" if 0 < age <= 14 else "person"
    female = sex == "female"
    if 0 < age <= 14:
        return "baby girl" if female else "baby boy"
    if 15 <= age <= 24:
        return "girl" if female else "boy"
    return "woman" if female else "man"


def attribute_prompt(age: int = 0, sex: str = "any", ethnicity: str = "any", text: str = "") -> str:
    """Compose the attribute prompt; all defaults give the empty prompt.

    Args:
        age (`int`, defaults to 0): years; 0 leaves the age unspecified.
        sex (`str`, defaults to "any"): one of `SEXES`.
        ethnicity (`str`, defaults to "any"): one of `ETHNICITIES`.
        text (`str`): free text appended after a comma.

    Returns:
        `str`: e.g. ``"37-year-old white man, freckles"``; ``""`` when nothing is specified.
    """
    if sex not in SEXES:
        raise ValueError(f"sex must be one of {SEXES}, got {sex!r}")
    if ethnicity not in ETHNICITIES:
        raise ValueError(f"ethnicity must be one of {ETHNICITIES}, got {ethnicity!r}")
    if not 0 <= age <= 120:
        raise ValueError(f"age must be 0 (unspecified) to 120, got {age}")
    words = []
    if age > 0:
        words.append(f"{age}-year-old")
    if ethnicity != "any":
        words.append(ethnicity)
    if age > 0 or sex != "any" or ethnicity != "any":
        words.append(_person_word(age, sex))
    parts = [" ".join(words)] if words else []
    if text.strip():
        parts.append(text.strip())
    return ", ".join(parts)
