"""The relabel gallery of reports (the paper's Fig. 5): a run's first relabels by step, each with
its face (rebuilt from the run's data), given, current and true label and candidate weights."""

from __future__ import annotations

from lionfer.reporting.runs import Run, labeled_faces

# gallery.csv's columns before its w_<class> ones (a class's candidate weight, as in relabels.csv)
GALLERY_COLUMNS = tuple("method column seed index id step given current true".split())


def _weights(row: dict, names: list[str], current: str) -> dict[str, float]:
    weights = {
        name: float(row[f"w_{name.lower()}"])
        for name in names
        if row.get(f"w_{name.lower()}") not in (None, "")
    }
    if not weights and row.get("weight") not in (None, ""):
        weights = {current: float(row["weight"])}
    return weights


def class_name(value, names: list[str]) -> str:
    """The class name of a label cell of relabels.csv; "" where it is empty or names no class."""
    value = str(value if value is not None else "").strip()
    return names[int(value)] if value.isdigit() and int(value) < len(names) else ""


def relabeled_rows(run: Run) -> list[dict]:
    """The rows of relabels.csv that changed a label (not the images set aside as demoted)."""
    return [r for r in run.relabels if r.get("status", "relabeled") != "demoted"]


def gallery_items(run: Run, limit: int) -> tuple[list[dict], str]:
    """The first `limit` relabels of a run (by step), with their faces; a note when the faces
    could not be loaded."""
    names = run.class_names
    rows = sorted(relabeled_rows(run), key=lambda r: (int(r.get("step") or -1), int(r["index"])))
    rows = rows[:limit]
    faces, note = labeled_faces(run, rows)
    items = []
    for row in rows:
        current = class_name(row["current_label"], names) or row.get("current_name", "")
        items.append(
            {
                "method": run.method,
                "seed": run.seed,
                "index": int(row["index"]),
                "id": row.get("id", ""),
                "step": row.get("step", ""),
                "given": class_name(row["given_label"], names) or row.get("given_name", ""),
                "current": current,
                "true": class_name(row.get("true_label", ""), names),
                "weights": _weights(row, names, current),
                "image": faces.get(int(row["index"])),
            }
        )
    return items, note
