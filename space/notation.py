"""Text form of architectures, compatible with timm's block strings.

A block string is ``TYPE_rR_kK_sS_eE_cC`` plus options, e.g.
``ir_r2_k5_s2_e6_c40_se0.25_nre`` (see docs/space.md). A whole network is
``stem:stage:stage:...:head`` where a stage is comma-separated block strings:

    stem_k3_s2_c16_nhs:ds_r1_k3_s1_e1_c16_nre:ir_r1_k3_s2_e4_c24_nre,...:head_v3_c960_f1280_nhs

``arch_to_str`` writes one canonical form (repeats grouped, every option
spelled out); ``arch_from_str`` also reads timm's shorter forms.
"""

from __future__ import annotations

import re

from hwnas.common.errors import HwnasError
from hwnas.common.units import shorten

from .spec import MAX_LAYERS, Arch, BlockSpec, HeadSpec, StemSpec

STAGE_SEP = ":"
BLOCK_SEP = ","

# Block type tokens: timm's names; "conv" is accepted for "cn".
_TYPE_TO_TOKEN = {"conv": "cn", "ds": "ds", "ir": "ir"}
_TOKEN_TO_TYPE = {"cn": "conv", "conv": "conv", "ds": "ds", "dsa": "ds", "ir": "ir"}
# Activation option ``n<act>`` as timm spells it.
_ACT_TO_TOKEN = {"relu": "re", "relu6": "r6", "hswish": "hs", "swish": "sw"}
_TOKEN_TO_ACT = {v: k for k, v in _ACT_TO_TOKEN.items()}
DEFAULT_ACT = "relu"  # a block string without ``n<act>`` uses ReLU

_OPT = re.compile(r"^([a-z]+?)(\d.*)?$")


class NotationError(HwnasError):
    """A malformed architecture or block string; the message names the bad token."""


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _num(token: str, value: str | None, kind: type = int) -> float:
    if value is None:
        raise NotationError(f"bad token {shorten(token)}: missing number")
    try:
        out = kind(value)
    except ValueError:
        raise NotationError(f"bad token {shorten(token)}: {shorten(value)} is not a number") from None
    return out


# ---------------------------------------------------------------- blocks ---
def block_to_str(spec: BlockSpec, repeats: int = 1) -> str:
    """Canonical string of ``repeats`` layers starting with ``spec``."""
    parts = [_TYPE_TO_TOKEN[spec.type], f"r{repeats}", f"k{spec.kernel}", f"s{spec.stride}"]
    if spec.type != "conv":
        parts.append(f"e{_fmt_num(spec.exp_ratio)}")
    if spec.mid_chs is not None:
        parts.append(f"m{spec.mid_chs}")
    parts.append(f"c{spec.out_chs}")
    if spec.se_ratio:
        parts.append(f"se{_fmt_num(spec.se_ratio)}")
        if spec.se_gate == "sigmoid":
            parts.append("sig")
        if spec.se_from == "in":
            parts.append("sein")
    parts.append(f"n{_ACT_TO_TOKEN[spec.act]}")
    if spec.type == "conv" and spec.skip:
        parts.append("skip")
    if spec.type != "conv" and not spec.skip:
        parts.append("noskip")
    return "_".join(parts)


def block_from_str(text: str) -> list[BlockSpec]:
    """Parse one block string into its layers (``r`` repeats; later ones stride 1)."""
    tokens = text.strip().split("_")
    if not tokens or tokens[0] not in _TOKEN_TO_TYPE:
        raise NotationError(
            f"bad block type {shorten(tokens[0])} in {shorten(text)}: expected one of {sorted(_TOKEN_TO_TYPE)}")
    kind = _TOKEN_TO_TYPE[tokens[0]]
    args: dict[str, object] = {"type": kind}
    repeats = 1
    skip: bool | None = None
    for tok in tokens[1:]:
        if tok == "noskip":
            skip = False
            continue
        if tok == "skip":
            skip = True
            continue
        if tok == "sig":
            args["se_gate"] = "sigmoid"
            continue
        if tok == "sein":
            args["se_from"] = "in"
            continue
        if tok.startswith("n") and tok[1:] in _TOKEN_TO_ACT:
            args["act"] = _TOKEN_TO_ACT[tok[1:]]
            continue
        m = _OPT.match(tok)
        if not m:
            raise NotationError(f"bad token {shorten(tok)} in {shorten(text)}")
        key, val = m.group(1), m.group(2)
        if key == "r":
            repeats = int(_num(tok, val))
        elif key == "k":
            args["kernel"] = int(_num(tok, val))
        elif key == "s":
            args["stride"] = int(_num(tok, val))
        elif key == "e":
            args["exp_ratio"] = float(_num(tok, val, float))
        elif key == "m":
            args["mid_chs"] = int(_num(tok, val))
        elif key == "c":
            args["out_chs"] = int(_num(tok, val))
        elif key == "se":
            args["se_ratio"] = float(_num(tok, val, float))
        else:
            raise NotationError(
                f"bad token {shorten(tok)} in {shorten(text)}: expected r, k, s, e, m, c, se, sig, sein, "
                f"n{{re,r6,hs,sw}}, skip or noskip")
    for need in ("kernel", "stride", "out_chs"):
        if need not in args:
            letter = {"kernel": "k", "stride": "s", "out_chs": "c"}[need]
            raise NotationError(f"block {shorten(text)} lacks its {letter} token ({need})")
    if not 1 <= repeats <= MAX_LAYERS:
        raise NotationError(f"bad token 'r{repeats}' in {shorten(text)}: repeats must be in "
                            f"1..{MAX_LAYERS}")
    if kind == "conv" and args.get("exp_ratio", 1.0) == 1.0:
        args.pop("exp_ratio", None)
    args["skip"] = skip if skip is not None else (kind != "conv")
    args.setdefault("act", DEFAULT_ACT)
    try:
        first = BlockSpec(**args)  # type: ignore[arg-type]
    except ValueError as e:
        raise NotationError(f"bad block {shorten(text)}: {e}") from None
    rest = BlockSpec(**{**args, "stride": 1}) if repeats > 1 else first  # type: ignore[arg-type]
    return [first] + [rest] * (repeats - 1)


def stage_to_str(stage: tuple[BlockSpec, ...]) -> str:
    """Group runs of identical layers (the first may have stride 2) into ``rN``."""
    out: list[str] = []
    i = 0
    while i < len(stage):
        head = stage[i]
        follower = _stride1(head)
        j = i + 1
        while j < len(stage) and stage[j] == follower:
            j += 1
        out.append(block_to_str(head, j - i))
        i = j
    return BLOCK_SEP.join(out)


def _stride1(spec: BlockSpec) -> BlockSpec:
    from dataclasses import replace

    return replace(spec, stride=1)


# ---------------------------------------------------------- stem / head ---
def stem_to_str(stem: StemSpec) -> str:
    return f"stem_k{stem.kernel}_s{stem.stride}_c{stem.out_chs}_n{_ACT_TO_TOKEN[stem.act]}"


def head_to_str(head: HeadSpec) -> str:
    parts = ["head", head.kind, f"c{head.chs}"]
    if head.kind == "v3":
        parts.append(f"f{head.features}")
    parts.append(f"n{_ACT_TO_TOKEN[head.act]}")
    return "_".join(parts)


def _parse_opts(text: str, what: str, allowed: str) -> dict[str, str]:
    opts: dict[str, str] = {}
    for tok in text.split("_")[1:]:
        if tok.startswith("n") and tok[1:] in _TOKEN_TO_ACT:
            opts["act"] = _TOKEN_TO_ACT[tok[1:]]
            continue
        if tok in ("v2", "v3"):
            opts["kind"] = tok
            continue
        m = _OPT.match(tok)
        if not m or m.group(1) not in allowed or m.group(2) is None:
            raise NotationError(f"bad token {shorten(tok)} in {what} {shorten(text)}")
        opts[m.group(1)] = m.group(2)
    return opts


def stem_from_str(text: str) -> StemSpec:
    o = _parse_opts(text, "stem", "ksc")
    if "c" not in o:
        raise NotationError(f"stem {shorten(text)} lacks its c token (channels)")
    try:
        return StemSpec(out_chs=int(o["c"]), kernel=int(o.get("k", 3)), stride=int(o.get("s", 2)),
                        act=o.get("act", DEFAULT_ACT))
    except ValueError as e:
        raise NotationError(f"bad stem {shorten(text)}: {e}") from None


def head_from_str(text: str) -> HeadSpec:
    o = _parse_opts(text, "head", "cf")
    if "c" not in o:
        raise NotationError(f"head {shorten(text)} lacks its c token (channels)")
    kind = o.get("kind", "v3" if "f" in o else "v2")
    try:
        return HeadSpec(kind=kind, chs=int(o["c"]), features=int(o.get("f", 0)), act=o.get("act", DEFAULT_ACT))
    except ValueError as e:
        raise NotationError(f"bad head {shorten(text)}: {e}") from None


# ---------------------------------------------------------------- arch ---
def arch_to_str(arch: Arch) -> str:
    parts = [stem_to_str(arch.stem)] + [stage_to_str(s) for s in arch.stages] + [head_to_str(arch.head)]
    return STAGE_SEP.join(parts)


def arch_from_str(text: str) -> Arch:
    """Parse ``stem:stage:...:head``; each stage is comma-separated block strings."""
    text = "".join(text.split())  # tolerate whitespace and line breaks
    parts = [p for p in text.split(STAGE_SEP)]
    if len(parts) < 3 or not parts[0].startswith("stem") or not parts[-1].startswith("head"):
        raise NotationError(
            f"bad architecture string {shorten(text)}: expected 'stem_...{STAGE_SEP}<stage>{STAGE_SEP}...{STAGE_SEP}head_...'")
    stages = []
    for p in parts[1:-1]:
        if not p:
            raise NotationError(f"empty stage in {shorten(text)}")
        layers: list[BlockSpec] = []
        for b in p.split(BLOCK_SEP):
            layers.extend(block_from_str(b))
        stages.append(tuple(layers))
    return Arch(stem=stem_from_str(parts[0]), stages=tuple(stages), head=head_from_str(parts[-1]))
