"""Why torch.load refused a file, in words: what the file is from its first bytes (empty, an image,
a TorchScript export, a ZIP archive, Python objects besides tensors, damaged, text), never torch's
advice to unpickle it. The one account of a refused file, for the checkpoint reader
(lionfer.training.checkpoint) and the weights reader (lionfer.models)."""

from __future__ import annotations

from pathlib import Path

IMAGE_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG", "PNG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def not_a_checkpoint(path: Path, error: Exception) -> str:
    """Why torch.load refused a file, in words and from its first bytes, without torch's advice
    (which is to unpickle arbitrary objects)."""
    text = str(error)
    with path.open("rb") as f:
        head = f.read(4096)
    if not head:
        return "the file is empty (0 bytes)"
    for magic, kind in IMAGE_MAGIC:
        if head.startswith(magic):
            return f"it is a {kind} image (the model comes first: lionfer predict MODEL INPUT...)"
    if head[8:12] == b"WEBP":
        return "it is a WebP image (the model comes first: lionfer predict MODEL INPUT...)"
    if "TorchScript" in text:
        return "it is a TorchScript export, which lionfer does not read back"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):  # torch's zip or pickle
        if "Weights only load failed" in text and "GLOBAL" in text.upper():
            return (
                "it holds Python objects besides tensors and plain values, which lionfer does "
                "not unpickle (a file of another program)"
            )
        first_entry = head[30 : 30 + int.from_bytes(head[26:28], "little")]
        if head.startswith(b"PK\x03\x04") and not first_entry.endswith(b"/data.pkl"):
            return "it is a ZIP archive, not a PyTorch file"  # torch's zip opens with data.pkl
        return "it is a damaged or truncated PyTorch file (copy it again)"
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
            return "it is a text file, not a PyTorch file"
        except UnicodeDecodeError as bad:
            if bad.start >= len(head) - 4:  # a character cut at the end of the 4096 bytes
                return "it is a text file, not a PyTorch file"
    return "it is not a PyTorch file"
