"""Losses of ALBEF / X-VLM and the relation-aware objectives: ITC, ITM hard negatives, whole-word MLM, boxes.

Pure functions of tensors (no model state), so each is tested on hand-made inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100  # label of tokens the MLM loss skips (torch's cross-entropy default)
MASK_SHARE, RANDOM_SHARE = 0.8, 0.1  # of the masked tokens: [MASK], a random token; the rest stay unchanged


def positives_from_ids(ids: torch.Tensor) -> torch.Tensor:
    """[B, B] bool: pairs that show the same thing (same image id, or same group id)."""
    return ids[:, None] == ids[None, :]


def group_ids_of_rows(rows: torch.Tensor) -> torch.Tensor:
    """An id per distinct row of ``rows`` [B, ...] (equal rows, equal id)."""
    _, inverse = torch.unique(rows.reshape(rows.shape[0], -1), dim=0, return_inverse=True)
    return inverse


@torch.no_grad()
def gather_ranks(x: torch.Tensor) -> torch.Tensor:
    """``x`` of every rank concatenated along dim 0 in rank order (``x`` itself outside torch.distributed);
    ranks may hold different numbers of rows. No gradient flows through (for momentum features)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return x
    world = torch.distributed.get_world_size()
    if world == 1:
        return x
    rows = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.zeros_like(rows) for _ in range(world)]
    torch.distributed.all_gather(counts, rows)
    counts = [int(c.item()) for c in counts]
    padded = torch.zeros((max(counts), *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in range(world)]
    torch.distributed.all_gather(parts, padded.contiguous())
    return torch.cat([part[:n] for part, n in zip(parts, counts, strict=True)])


def itc_loss(
    image_feat: torch.Tensor,
    text_feat: torch.Tensor,
    temp: torch.Tensor | float,
    positives: torch.Tensor,
    *,
    image_feat_m: torch.Tensor | None = None,
    text_feat_m: torch.Tensor | None = None,
    image_queue: torch.Tensor | None = None,
    text_queue: torch.Tensor | None = None,
    alpha: float = 0.0,
) -> torch.Tensor:
    """Image-text contrastive loss, mean of both directions.

    Features are L2-normalised [B, D]. ``positives`` [B, B] marks matching pairs (targets spread evenly over
    them). With momentum features the candidates are the momentum features of the batch followed by the queue
    [Q, D] (always negatives), and with ``alpha > 0`` the targets mix in the momentum model's softmax (ALBEF).
    """
    if (image_feat_m is None) != (text_feat_m is None):
        raise ValueError("give both momentum features or neither")
    texts, images = text_feat, image_feat
    if text_feat_m is not None:
        texts = text_feat_m if text_queue is None else torch.cat([text_feat_m, text_queue], dim=0)
        images = image_feat_m if image_queue is None else torch.cat([image_feat_m, image_queue], dim=0)
    batch, candidates = image_feat.shape[0], texts.shape[0]
    targets = torch.zeros(batch, candidates, device=image_feat.device, dtype=image_feat.dtype)
    targets[:, :batch] = positives.to(targets.dtype)
    targets = targets / targets.sum(dim=1, keepdim=True)
    targets_t = torch.zeros_like(targets)
    targets_t[:, :batch] = positives.t().to(targets.dtype)
    targets_t = targets_t / targets_t.sum(dim=1, keepdim=True)
    sim_i2t = image_feat @ texts.t() / temp
    sim_t2i = text_feat @ images.t() / temp
    if alpha > 0 and image_feat_m is not None:
        with torch.no_grad():
            soft_i2t = F.softmax(image_feat_m @ texts.t() / temp, dim=1)
            soft_t2i = F.softmax(text_feat_m @ images.t() / temp, dim=1)
        targets = alpha * soft_i2t + (1 - alpha) * targets
        targets_t = alpha * soft_t2i + (1 - alpha) * targets_t
    loss_i2t = -(F.log_softmax(sim_i2t, dim=1) * targets).sum(dim=1).mean()
    loss_t2i = -(F.log_softmax(sim_t2i, dim=1) * targets_t).sum(dim=1).mean()
    return (loss_i2t + loss_t2i) / 2


def sample_hard_negatives(
    sim: torch.Tensor,
    same: torch.Tensor,
    generator: torch.Generator | None = None,
    hard_fraction: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row, a column drawn by softmax of ``sim`` [B, C] among those not marked in ``same`` [B, C].

    With ``hard_fraction`` below 1, each row is mined that way only with that probability and otherwise draws
    uniformly among its negatives (at 1, ALBEF's rule, no random number is spent on the choice).
    Returns (index [B], valid [B]); a row whose columns are all ``same`` has no negative (valid False).
    """
    with torch.no_grad():
        logits = sim.float()
        if hard_fraction < 1.0:
            easy = torch.rand(sim.shape[0], generator=generator, device=sim.device) >= hard_fraction
            logits = torch.where(easy[:, None], torch.zeros_like(logits), logits)
        logits = logits.masked_fill(same, float("-inf"))
        valid = (~same).any(dim=1)
        weights = torch.where(valid[:, None], F.softmax(logits, dim=1), torch.ones_like(logits))
        weights = torch.nan_to_num(weights, nan=0.0)
        index = torch.multinomial(weights, 1, generator=generator).squeeze(1)
        return torch.where(valid, index, torch.zeros_like(index)), valid


def itm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Matching loss: cross-entropy of the [N, 2] ITM logits against labels (1 = match)."""
    return F.cross_entropy(logits, labels)


def itm_separation(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean p(match) of the rows labelled 1 minus that of the rows labelled 0 (0 when a side is empty): near 0
    while ITM cannot tell pairs apart, near 1 when it separates them."""
    with torch.no_grad():
        p_match = F.softmax(logits.float(), dim=-1)[:, 1]
        pos, neg = labels == 1, labels == 0
        if not (pos.any() and neg.any()):
            return p_match.new_zeros(())
        return p_match[pos].mean() - p_match[neg].mean()


def mean_pairwise_cosine(feat: torch.Tensor) -> torch.Tensor:
    """Mean cosine over the distinct pairs of rows of ``feat`` [N, D] (1 for fewer than two rows): near 1 when
    every input gets the same feature (collapse)."""
    with torch.no_grad():
        n = feat.shape[0]
        if n < 2:
            return feat.new_ones(())
        unit = F.normalize(feat.float(), dim=-1)
        total = unit.sum(dim=0).pow(2).sum() - unit.pow(2).sum()  # sum over i != j of <u_i, u_j>
        return total / (n * (n - 1))


def mask_whole_words(
    input_ids: torch.Tensor,
    word_ids: torch.Tensor,
    *,
    probability: float,
    mask_token_id: int,
    vocab_size: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole-word masking: each word is chosen with ``probability``; all its tokens are predicted.

    ``word_ids`` [B, L] gives each token's word index (-1 for special and padding tokens: never chosen).
    Of the chosen tokens 80% become [MASK], 10% a random token, 10% stay (decided per token, as BERT).
    Returns (masked input_ids, labels with the original id where chosen and -100 elsewhere).
    """
    device = input_ids.device
    words = int(word_ids.max().item()) + 1 if word_ids.numel() else 0
    draw = torch.rand(input_ids.shape[0], max(words, 1), generator=generator, device=device) < probability
    chosen = torch.gather(draw, 1, word_ids.clamp(min=0)) & (word_ids >= 0)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE))
    share = torch.rand(input_ids.shape, generator=generator, device=device)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, device=device)
    masked = torch.where(chosen & (share < MASK_SHARE), torch.full_like(input_ids, mask_token_id), input_ids)
    masked = torch.where(
        chosen & (share >= MASK_SHARE) & (share < MASK_SHARE + RANDOM_SHARE), random_ids, masked
    )
    return masked, labels


def token_word_ids(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, special_ids: tuple[int, ...]
) -> torch.Tensor:
    """Word ids when the batch has none: every real, non-special token is its own word (-1 elsewhere)."""
    real = attention_mask.bool()
    for special in special_ids:
        real &= input_ids != special
    positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    return torch.where(real, positions, torch.full_like(positions, -1))


def mlm_loss(
    logits: torch.Tensor, labels: torch.Tensor, soft_targets: torch.Tensor | None = None, alpha: float = 0.0
) -> torch.Tensor:
    """Masked-LM cross-entropy, optionally distilled (ALBEF), of the chosen tokens only: ``logits`` [M, V],
    ``labels`` [M] (no IGNORE), ``soft_targets`` [M, V]; 0 with a graph when M is 0."""
    if labels.numel() == 0:
        return logits.sum() * 0.0
    loss = F.cross_entropy(logits, labels)
    if soft_targets is not None and alpha > 0:
        distill = -(F.log_softmax(logits, dim=-1) * soft_targets).sum(dim=-1).mean()
        loss = (1 - alpha) * loss + alpha * distill
    return loss


def xywh_to_xyxy(box: torch.Tensor) -> torch.Tensor:
    """Boxes x, y, w, h -> x0, y0, x1, y1."""
    x, y, w, h = box.unbind(-1)
    return torch.stack([x, y, x + w, y + h], dim=-1)


def cxcywh_to_xyxy(box: torch.Tensor) -> torch.Tensor:
    """Boxes centre x, centre y, w, h -> x0, y0, x1, y1."""
    cx, cy, w, h = box.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def xywh_to_cxcywh(box: torch.Tensor) -> torch.Tensor:
    """Boxes x, y, w, h -> centre x, centre y, w, h."""
    x, y, w, h = box.unbind(-1)
    return torch.stack([x + w / 2, y + h / 2, w, h], dim=-1)


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """GIoU [N] of paired boxes a[i], b[i] (x0, y0, x1, y1): IoU minus the empty share of their hull."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    low, high = torch.max(a[:, :2], b[:, :2]), torch.min(a[:, 2:], b[:, 2:])
    inter = (high - low).clamp(min=0).prod(dim=1)
    union = area_a + area_b - inter
    iou = inter / (union + eps)
    hull = (torch.max(a[:, 2:], b[:, 2:]) - torch.min(a[:, :2], b[:, :2])).clamp(min=0).prod(dim=1)
    return iou - (hull - union) / (hull + eps)


def box_losses(pred_cxcywh: torch.Tensor, target_xywh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """X-VLM box regression: (L1 on centre/size, 1 - GIoU), each a mean over boxes."""
    l1 = F.l1_loss(pred_cxcywh, xywh_to_cxcywh(target_xywh), reduction="none").sum(dim=1).mean()
    giou = 1 - generalized_box_iou(cxcywh_to_xyxy(pred_cxcywh), xywh_to_xyxy(target_xywh))
    return l1, giou.mean()
