"""Text the page shows: captions, gallery labels, the status line, progress
and the metrics table. Pure functions of the service's records."""

from retrieval.evaluation.table import metrics_table

SIDE_TITLES = {"pretrained": "Pretrained", "finetuned": "Fine-tuned"}


SHOWN_VALUE = 40  # characters of one metadata value in a caption


def caption(match) -> str:
    """Similarity, then class name (✓ when it shares the query's class); under
    it the item's metadata and how many near-identical results it stands for,
    so a shopper sees what a result is without opening it."""
    lines = [f"{match.score:.3f} · {'✓ ' if match.same_class else ''}{match.label or match.id}"]
    if match.metadata:
        lines.append(metadata_line(match.metadata))
    if match.near_identical:
        lines.append(f"+{len(match.near_identical)} near-identical")
    return "\n".join(lines)


def metadata_line(metadata: dict) -> str:
    """`make=Audi · body=Coupe · year=2012`: values cut short, numbers compact."""
    return " · ".join(f"{name}={_value(value)}" for name, value in metadata.items())


def _value(value) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text if len(text) <= SHOWN_VALUE else text[:SHOWN_VALUE - 1] + "…"


def side_label(title: str, side) -> str:
    label = f"{title} {side.embedding}" if side.embedding else f"{title}: none"
    if side.same_class is not None:
        label += f" · {side.same_class}/{len(side.results)} share the query's class"
    return label


def status_markdown(records: list) -> str:
    """One line per served catalogue: its size, state (with progress while it
    builds) and fine-tuned head."""
    lines = []
    for s in records:
        head = f"**{s['catalogue']}** ({s['backbone']}"
        head += f", {s['items']} items)" if s["items"] is not None else ")"
        state = s["status"]
        if state == "building":
            state = progress_text(s["progress"]) if s["progress"] else "queued (another catalogue is building)"
        fine = f" · fine-tuned: {s['finetuned']}" if s["finetuned"] else " · no fine-tuned head"
        lines.append(f"- {head}: {state}" + (fine if s["status"] == "ready" else ""))
    return "\n".join(lines)


def progress_text(progress: dict) -> str:
    """'extracting features ▓▓▓░░░░░░░ 1,234 / 4,052 images (30%), about 2 min left'."""
    if not progress["total"]:
        return f"{progress['phase']}…"
    filled = round(10 * progress["done"] / progress["total"])
    left = progress["seconds_left"]
    eta = "" if left is None else (f", about {left // 60} min {left % 60} s left" if left >= 60
                                   else f", about {left} s left")
    return (f"{progress['phase']} {'▓' * filled}{'░' * (10 - filled)} {progress['done']:,} / "
            f"{progress['total']:,} {progress['unit']} ({progress['percent']}%){eta}")


def metrics_markdown(name: str, backbone: str, validation: dict | None, note: str) -> str:
    """The validation table of a catalogue's fine-tuning run (metrics.json)."""
    title = f"### {name} ({backbone})\n\n"
    if validation is None:
        return title + note
    if "error" in validation:
        return title + f"Could not read the run's metrics: {validation['error']}"
    m = validation["metrics"]
    rows = [("Pretrained", m.get("pretrained")), ("Pretrained + whitening", m.get("whitening")),
            (f"Fine-tuned (best epoch {m.get('best', {}).get('epoch', '?')})", m.get("best"))]
    base, names = m.get("pretrained") or {}, m.get("validation_classes") or []
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    held_out = (f"Measured on {base.get('n_images', '?')} images of {base.get('n_classes', '?')} classes "
                f"held out from training ({shown}): a class-disjoint validation slice of the training classes.")
    return title + held_out + "\n\n" + metrics_table(rows)
