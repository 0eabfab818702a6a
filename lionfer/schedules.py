"""Every method's warm-ups, ramps, EMAs and per-epoch updates in the terms of a run: what its
paper (or its authors' code) gives each one, as a share of that run, what lionfer's default gives
it in a run of N steps, and the rule that gives a short run the source's shares
(`rule_overrides`, used by the `showcase` sweep). docs/schedules.md holds the tables this module
prints (`python -m lionfer.schedules`); a test keeps the page and the sweep equal to them.
"""

from __future__ import annotations

from dataclasses import dataclass

from lionfer.config import DEFAULT_CONFIG, load_config
from lionfer.errors import ConfigError
from lionfer.reporting.document import markdown_table

MIN_STEPS = 10  # the rule's bound: no EMA time constant or window shorter than 10 steps
STEPS = (600, 1200)  # the embedded default's run and lion-digits' run
BATCH = 16  # labeled images per step (train.batch_size)
GR_RUN = 2**20  # steps of the google-research codes and USB: 2^16 kimg at batch 64
RULED = ("fraction", "period", "window", "ema")  # kinds the rule rescales (with a source run)
METHODS = (  # the rows of the showcase sweep: every algorithm, LION with each recipe
    "supervised",
    "pseudolabel",
    "mixmatch",
    "uda",
    "remixmatch",
    "marginmix",
    "fixmatch",
    "adacm",
    "flexmatch",
    "freematch",
    "softmatch",
    "lion:paper",
    "lion:released",
    "lion:robust",
    "lion:evidence",
    "fullysupervised",
)


@dataclass(frozen=True)
class Schedule:
    """One schedule of one method. `kind` says how its field measures time: fraction (of the
    run), period (steps between updates), window (steps averaged), ema (a momentum per step),
    visits (a momentum per visit of one image), state (decided by the model, not the clock).
    `span` and `run` are its length and its run's length in the source's steps; 0 where the
    source gives no run length or the schedule is not counted in steps (the rule keeps it)."""

    method: str  # a registered algorithm, or lion:<recipe>
    field: str  # the algorithm's config field ("" where lionfer has no knob)
    what: str
    source: str  # the schedule in the source's own terms
    cite: str
    kind: str = "state"
    span: float = 0.0
    run: float = 0.0

    @property
    def ruled(self) -> bool:
        return self.kind in RULED and self.span > 0 and self.run > 0

    @property
    def share(self) -> float:
        return self.span / self.run


GR_MM = "google-research/mixmatch `mixmatch.py` (warmup_kimg 1024, train_kimg 1<<16, batch 64)"
GR_RMM = "google-research/remixmatch `remixmatch_no_cta.py` (warmup_kimg 1024, dbuf 128, batch 64)"
USB = "USB `config/classic_cv/{}/{}_cifar10_*_0.yaml` (ema_p 0.999, num_train_iter 1048576)"
ADACM = "hangyu94/Ada-CM `main.py` (epochs 20, train-iteration 800)"
LION_CODE = "NUM-7/LION `main.py` (epochs 30, train-iteration 800, relabel_epoch 10)"

SCHEDULES: tuple[Schedule, ...] = (
    Schedule("supervised", "", "none", "no warm-up, ramp, EMA or epoch", "-"),
    Schedule("fullysupervised", "", "none", "no warm-up, ramp, EMA or epoch", "-"),
    Schedule(
        "pseudolabel",
        "ramp_start",
        "α(t) = 0 until T1",
        "T1 = 100 epochs; the length of the run is not given",
        "Lee 2013, α(t) (α_f = 3, T1 = 100, T2 = 600 without pre-training)",
        "fraction",
    ),
    Schedule(
        "pseudolabel",
        "ramp_end",
        "α(t) reaches α_f at T2",
        "T2 = 600 epochs; the length of the run is not given",
        "Lee 2013, α(t)",
        "fraction",
    ),
    Schedule(
        "mixmatch",
        "rampup",
        "λ_U rises linearly",
        "16,384 of 1,048,576 steps",
        GR_MM,
        "fraction",
        16384,
        GR_RUN,
    ),
    Schedule(
        "uda",
        "tsa",
        "training-signal annealing",
        "off in the image runs; when on, over the whole run (t / T)",
        "google-research/uda `image/main.py` get_tsa_threshold, `run_cifar10_gpu.sh`",
    ),
    Schedule(
        "remixmatch",
        "rampup",
        "λ_U and λ_Û1 rise linearly",
        "16,384 of 1,048,576 steps",
        GR_RMM,
        "fraction",
        16384,
        GR_RUN,
    ),
    Schedule(
        "remixmatch",
        "history",
        "p_model: mean of the last batches",
        "128 batches of 1,048,576 steps",
        GR_RMM + ", `libml/layers.py` PMovingAverage",
        "window",
        128,
        GR_RUN,
    ),
    Schedule(
        "marginmix",
        "rampup",
        "λ_U rises linearly",
        "not published (no code); its base code ramps over the whole run",
        "YU1ut/MixMatch-pytorch `train.py` linear_rampup(epoch, epochs)",
        "fraction",
    ),
    Schedule(
        "marginmix",
        "centroid_momentum",
        "EMA of the class centroids",
        "not published; lionfer's own, a step",
        "-",
        "ema",
    ),
    Schedule(
        "fixmatch",
        "",
        "none",
        "fixed threshold (its cosine LR decay is the protocol's constant LR here)",
        "google-research/fixmatch `fixmatch.py`",
    ),
    Schedule(
        "adacm",
        "epoch_steps",
        "margins T_c and sigmoid(epoch) updated once an epoch",
        "800 of 20 × 800 = 16,000 steps",
        ADACM,
        "period",
        800,
        16000,
    ),
    Schedule(
        "flexmatch",
        "warmup",
        "threshold warm-up",
        "ends when fewer images are unused than the largest class count (images, not steps)",
        "Zhang et al. 2021 (threshold warm-up); USB `flexmatch/utils.py` thresh_warmup",
    ),
    Schedule(
        "freematch",
        "ema",
        "EMAs of τ_t, p̃ and h̃",
        "λ = 0.999: 1,000 of 1,048,576 steps",
        USB.format("freematch", "freematch"),
        "ema",
        1000,
        GR_RUN,
    ),
    Schedule(
        "softmatch",
        "ema",
        "EMAs of μ_t, σ_t² (the confidence's mean, variance) and p̂",
        "m = 0.999: 1,000 of 1,048,576 steps",
        USB.format("softmatch", "softmatch") + ", `softmatch/utils.py`",
        "ema",
        1000,
        GR_RUN,
    ),
    Schedule(
        "lion",
        "ema_momentum",
        "φ: prototypes and candidate weights",
        "φ = 0.99 per update of a prototype or visit of an image",
        "Du et al. 2023 Eqs. 3, 5",
        "visits",
    ),
    Schedule(
        "lion:paper",
        "disambiguation_start",
        "label disambiguation begins",
        "none in the paper (20 epochs, iterations per epoch not given)",
        "Du et al. 2023 §4.2",
        "fraction",
    ),
    Schedule(
        "lion:released",
        "epoch_steps",
        "γ rises 0.01 and λ2 falls 0.015 an epoch",
        "800 of 30 × 800 = 24,000 steps",
        LION_CODE,
        "period",
        800,
        24000,
    ),
    Schedule(
        "lion:released",
        "disambiguation_start",
        "label disambiguation begins",
        "epoch 10 of 30: after 7,200 of 24,000 steps",
        LION_CODE,
        "fraction",
        7200,
        24000,
    ),
    Schedule(
        "lion:robust",
        "start_rule",
        "label disambiguation begins",
        "lionfer's own: once 90% of the labeled images are fitted",
        "-",
    ),
    Schedule(
        "lion:evidence",
        "evidence_start",
        "first evidence decision, and the audit's read (again after each further one "
        "while it is inconclusive)",
        "lionfer's own (no paper)",
        "-",
        "fraction",
    ),
    Schedule(
        "lion:evidence",
        "evidence_momentum",
        "an image's evidence over its visits",
        "lionfer's own, per visit",
        "-",
        "visits",
    ),
)


@dataclass(frozen=True)
class Ratio:
    """The source's unlabeled images per labeled one, and the unlabeled views a method uses."""

    method: str
    source: str
    cite: str
    views: int  # unlabeled views per image (the algorithm's `views`)


RATIOS: tuple[Ratio, ...] = (
    Ratio("supervised", "- (no unlabeled images)", "-", 0),
    Ratio("fullysupervised", "- (no unlabeled images)", "-", 0),
    Ratio("pseudolabel", "not checked here; USB: 1", "USB pseudolabel configs (uratio 1)", 1),
    Ratio("mixmatch", "1 (64 + 64)", "google-research/mixmatch `libml/train.py`", 2),
    Ratio("uda", "7 (64 + 448)", "google-research/uda `run_cifar10_gpu.sh` (unsup_ratio 7)", 2),
    Ratio("remixmatch", "1 (64 + 64, K = 8 strong views)", "google-research/remixmatch", 3),
    Ratio("marginmix", "not published; base code 1", "YU1ut/MixMatch-pytorch `train.py`", 2),
    Ratio("fixmatch", "7 (64 + 448)", "google-research/fixmatch `fixmatch.py` (uratio 7)", 2),
    Ratio("adacm", "1 (16 + 16)", "hangyu94/Ada-CM `main.py` (batch-size 16)", 3),
    Ratio("flexmatch", "7 (64 + 448)", "USB flexmatch configs (uratio 7)", 2),
    Ratio("freematch", "7 (64 + 448)", "USB freematch configs (uratio 7)", 2),
    Ratio("softmatch", "7 (64 + 448)", "USB softmatch configs (uratio 7)", 2),
    Ratio("lion", "1 (16 + 16)", "NUM-7/LION `main.py` (batch 16, two loaders)", 2),
)


def _algorithm(method: str) -> list[str]:
    name, _, recipe = method.partition(":")
    return [f"algorithm.name={name}"] + ([f"algorithm.recipe={recipe}"] if recipe else [])


def default_value(method: str, field: str):
    """The field's value in the embedded default (default.toml) for the method; None when the
    method is not in this version of lionfer."""
    try:
        cfg = load_config(DEFAULT_CONFIG, _algorithm(method))
    except ConfigError:
        return None
    return getattr(cfg.algorithm, field)


def rule_value(schedule: Schedule, steps: int):
    """The rule: the source's share of its run, in a run of `steps` steps (an EMA time constant
    or a window no shorter than MIN_STEPS steps, a period at least one step)."""
    length = schedule.share * steps
    if schedule.kind == "fraction":
        return round(schedule.share, 6)
    if schedule.kind == "period":
        return max(1, round(length))
    if schedule.kind == "window":
        return max(MIN_STEPS, round(length))
    return round(1 - 1 / max(MIN_STEPS, length), 6)  # ema


def rule_overrides(method: str, steps: int) -> tuple[str, ...]:
    """`algorithm.FIELD=VALUE` for every schedule of the method that the rule rescales, written
    out even where it equals the default."""
    return tuple(
        f"algorithm.{s.field}={rule_value(s, steps)}"
        for s in SCHEDULES
        if s.method == method and s.ruled
    )


def _percent(share: float) -> str:
    return f"{100 * share:.3g}%"


def _steps(count: float) -> str:
    return f"{count:,.0f} steps" if count >= 100 else f"{count:.3g} steps"


def _length(schedule: Schedule, value, steps: int) -> str:
    """What a value of the schedule's field amounts to in a run of `steps` steps."""
    if value is None:
        return "not in lionfer yet"
    if schedule.kind == "fraction":
        return f"{_percent(value)} ({_steps(value * steps)})"
    if schedule.kind == "period":
        updates = steps // value
        return f"{_percent(value / steps)} ({updates} update{'' if updates == 1 else 's'})"
    if schedule.kind == "window":
        return f"{_percent(value / steps)} ({_steps(value)})"
    if schedule.kind == "ema":
        constant = 1 / (1 - value)
        return f"{_percent(constant / steps)} ({_steps(constant)})"
    if schedule.kind == "visits":
        return f"{1 / (1 - value):.3g} visits, any run"
    return "not a time"


def source_table() -> str:
    """Each schedule at its source and in lionfer's embedded default at 600 and 1,200 steps."""
    header = [
        "method",
        "field = default",
        "what",
        "source's schedule",
        "share of its run",
        *(f"default in {n:,} steps" for n in STEPS),
        "source",
    ]
    rows = []
    for s in SCHEDULES:
        value = default_value(s.method, s.field) if s.field else None
        field = f"`{s.field} = {value}`" if s.field else "-"
        if s.field and value is None:
            field = f"`{s.field}` (to check)"
        share = _percent(s.share) if s.ruled else "-"
        lengths = [_length(s, value, n) if s.field else "-" for n in STEPS]
        rows.append([s.method, field, s.what, s.source, share, *lengths, s.cite])
    return markdown_table(header, rows)


def rule_table() -> str:
    """The rule's value of every schedule it rescales, at 600 and 1,200 steps."""
    header = ["method", "field", "source's share", *(f"rule in {n:,} steps" for n in STEPS)]
    rows = []
    for s in SCHEDULES:
        if s.ruled:
            values = [f"`{rule_value(s, n)}`: {_length(s, rule_value(s, n), n)}" for n in STEPS]
            rows.append([s.method, f"`{s.field}`", _percent(s.share), *values])
    return markdown_table(header, rows)


def ratio_table(ratios: tuple[int, ...] = (1, 7)) -> str:
    """Each method's source ratio and the images it augments a step at each ratio."""
    header = [
        "method",
        "source's unlabeled per labeled",
        "unlabeled views",
        *(f"images a step at `unlabeled_ratio={r}`" for r in ratios),
        "source",
    ]
    rows = []
    for r in RATIOS:
        images = [str(BATCH + BATCH * ratio * r.views) for ratio in ratios]
        rows.append([r.method, r.source, str(r.views), *images, r.cite])
    return markdown_table(header, rows)


def overrides_table(steps: int = STEPS[0]) -> str:
    """The overrides the rule gives each method in a run of `steps` steps."""
    rows = []
    for method in METHODS:
        found = rule_overrides(method, steps)
        text = ", ".join(f"`{o}`" for o in found) if found else "none (defaults kept)"
        rows.append([method, text])
    return markdown_table(["method", f"the rule's overrides at {steps:,} steps"], rows)


def tables() -> str:
    parts = (source_table(), rule_table(), overrides_table(), ratio_table())
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    print(tables(), end="")
