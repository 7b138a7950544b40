"""An identifier type's fold over a whole Arrow column, for the snapshot connector and the guard:
the same result as `connectors.normalize.fold_text` on each value, at Arrow's speed where it can.
Arrow's own Unicode case mapping is not Python's (ß, İ, final Σ), so only ASCII texts go through
Arrow's kernels (NFC leaves them as they are, and there the two agree); the rest go one by one
through `fold_text`."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from connectors.normalize import TRIM_CHARS, Fold, fold_text


def fold_array(texts: pa.Array, fold: Fold) -> pa.Array:
    """Each text of a string array folded as `fold_text` folds it; nulls stay null."""
    others = pc.invert(pc.fill_null(pc.string_is_ascii(texts), True))
    folded = texts
    for step in fold:
        if step == "trim":
            folded = pc.utf8_trim(folded, characters=TRIM_CHARS)
        else:
            folded = pc.ascii_lower(folded) if step == "lower" else pc.ascii_upper(folded)
    if not pc.any(others).as_py():
        return folded
    spelled = [fold_text(text, fold) for text in texts.filter(others).to_pylist()]
    return pc.replace_with_mask(folded, others, pa.array(spelled, texts.type))
