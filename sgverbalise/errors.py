"""The error of bad user input: what the command line reports as one line on stderr with exit status 2.

Library code raises ``InputError`` where a user's argument or file is wrong (a missing input, an output path that
is a file, an id list that does not parse); everything else that goes wrong is a bug and keeps its traceback.
``InputFileError`` is the input file that is cut or does not parse: it says which file and where.
"""

from __future__ import annotations

from sgverbalise.schemas.urls import redact


class InputError(ValueError):
    """Bad user input: an argument, a path or a file's content that the job cannot use."""


class InputFileError(InputError):
    """An input file that breaks off (cut, corrupt, not JSON) after ``elements`` complete top-level elements, the
    parser having read ``offset`` bytes of it (of its decompressed stream when compressed): at a cut, its end."""

    def __init__(self, url: str, elements: int, offset: int, detail: str) -> None:
        self.url, self.elements, self.offset, self.detail = url, elements, offset, detail
        super().__init__(f"{redact(url)}: {detail} after {elements} complete entries (parser at byte {offset})")

    def __reduce__(self):  # pickled across processes with its fields, not its message
        return type(self), (self.url, self.elements, self.offset, self.detail)

    def cut(self, source: str) -> dict:
        """The manifest's record of the cut (``cuts`` of manifest.schema.json)."""
        return {"source": source, "file": redact(self.url), "elements_read": self.elements,
                "byte_offset": self.offset, "error": self.detail}
