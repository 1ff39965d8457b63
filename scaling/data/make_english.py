"""Rebuild the shipped English corpus (kjv.txt.xz, tdavid.txt.xz) from Debian packages. Not used at run time.

Run on Debian/Ubuntu as root, from this folder:

    apt-get install -y bible-kjv-text bible-kjv sword-comm-tdavid libsword-utils
    python3 make_english.py

Sources (both public domain; see README.md):
- the King James Bible (1611) from `bible-kjv-text`, read with its `bible` command, one document per chapter;
- C. H. Spurgeon's "The Treasury of David" (1869-1885) from the SWORD module `sword-comm-tdavid`, exported with
  `mod2imp`, one document per psalm, OSIS markup removed. Only the psalms that fit the size budget are kept
  (TDAVID_MAX_BYTES), and the KJV chapters of those psalms are left out of kjv.txt, because each Treasury
  chapter quotes its psalm verse by verse: a psalm in the held-out split and its exposition in the train split
  would leak.
"""

from __future__ import annotations

import html
import lzma
import re
import subprocess

TDAVID_MAX_BYTES = 7_600_000  # keeps the two .xz files together under about 3 MB


def tdavid_documents() -> list[tuple[int, str]]:
    """(psalm number, text) for the preface (0) and the psalms, in order."""
    raw = subprocess.run(["mod2imp", "TDavid"], check=True, capture_output=True, text=True).stdout
    parts = re.split(r"^\$\$\$(.*)$", raw, flags=re.MULTILINE)
    docs = []
    for key, body in zip(parts[1::2], parts[2::2]):
        body = re.sub(r"<title[^>]*>(.*?)</title>", r"\n\1\n", body, flags=re.DOTALL)  # titles on their own line
        body = re.sub(r"<(div|l|lg|item|list)\b[^>]*/?>", "\n", body)  # paragraphs, poetry lines, list items
        body = re.sub(r"</(l|item|list)>", "\n", body)
        body = re.sub(r"<[^>]+>", "", body)  # emphasis, references, milestones
        body = html.unescape(body).replace("\u202f", " ").replace("\xa0", " ")
        body = re.sub(r"[\x80-\x9f]", "", body)  # a few stray C1 control characters
        body = re.sub(r"[ \t]+", " ", body)
        body = re.sub(r" *\n[ \n]*", "\n", body).strip()
        if len(body) > 200:  # entries "Psalms N:0" are empty headers
            docs.append((int(key.split()[1].split(":")[0]), body))
    return docs


def kjv_chapters() -> list[tuple[str, int, str]]:
    """(book, chapter, text): heading line, then the verses joined into one paragraph without verse numbers."""
    raw = subprocess.run(["bible", "-l10000", "gen1:1-rev22:21"], check=True, capture_output=True, text=True).stdout
    chapters = []
    for block in re.split(r"\n\s*\n(?=[1-3]?\s?[A-Z][A-Za-z ]+ \d+\n)", raw.strip()):
        head, *verses = block.strip().split("\n")
        verses = [re.sub(r"^\s*\d+ ", "", v).strip() for v in verses if v.strip()]
        book, number = head.strip().rsplit(" ", 1)
        chapters.append((book, int(number), head.strip() + "\n" + " ".join(verses)))
    return chapters


def write_xz(path: str, docs: list[str]) -> None:
    text = "\n\n".join(docs) + "\n"
    with open(path, "wb") as fh:
        fh.write(lzma.compress(text.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME))
    print(f"{path}: {len(docs)} documents, {len(text.encode('utf-8'))} bytes of text")


def main() -> None:
    tdavid, size = [], 0
    for psalm, text in tdavid_documents():
        size += len(text.encode("utf-8")) + 2
        if size > TDAVID_MAX_BYTES:
            break
        tdavid.append((psalm, text))
    psalms = {psalm for psalm, _ in tdavid if psalm > 0}
    kjv = [text for book, number, text in kjv_chapters() if not (book == "Psalms" and number in psalms)]
    write_xz("kjv.txt.xz", kjv)
    write_xz("tdavid.txt.xz", [text for _, text in tdavid])
    print(f"Treasury of David: preface and psalms 1-{max(psalms)}; KJV without those psalms")


if __name__ == "__main__":
    main()
