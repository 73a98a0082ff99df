"""Character NLL: mean negative log-likelihood per character of texts under a character model.

A local Hugging Face ``evaluate`` metric (loaded offline from this folder). The character
model is passed to ``compute`` as ``model``; it must be an autoregressive model over the
characters of ``alphabet`` (id = position in the alphabet) with one extra start symbol
(id ``start_id``, default ``len(alphabet)``):

    model(ids: LongTensor (B, T)) -> logits (B, T, len(alphabet))   (or a tuple, logits first)

where ``logits[:, t]`` predicts character t of the text from the input ids
``[start_id, c_0, ..., c_{t-1}]``. Every character is scored, the first one from the start
symbol alone, so each text is judged exactly as the model would generate it. The result is
pooled over all characters: sum of NLL / number of characters, in nats (divide by ln 2 for
bits). Lower is better. Keep one import per line: evaluate's import scanner reads naively.
"""

import math

import datasets
import evaluate
import torch

_DESCRIPTION = "Mean NLL per character (nats) of texts under a given character-level model."

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): the texts; every character must be in ``alphabet``.
    model (torch.nn.Module): the character model (see the module docstring).
    alphabet (str): the model's characters, in id order.
    start_id (int, optional): the start symbol's id, default len(alphabet).
    batch_size (int, optional): texts per forward pass, default 256.
Returns:
    "nll_per_char" (float, nats), "bits_per_char" (float), "n_chars" (int).
"""


def encode(text, index):
    """Character ids of ``text``; a ValueError names the first foreign character."""
    try:
        return [index[c] for c in text]
    except KeyError as exc:
        raise ValueError(f"character {exc.args[0]!r} of {text[:40]!r} is not in the model's "
                         f"alphabet") from None


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CharNll(evaluate.Metric):
    """NLL per character under a character-level autoregressive model."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions, model=None, alphabet=None, start_id=None, batch_size=256):
        if model is None or not alphabet:
            raise ValueError("char_nll needs model=<character model> and alphabet=<its chars>")
        index = {c: i for i, c in enumerate(alphabet)}
        start_id = len(alphabet) if start_id is None else int(start_id)
        device = next(model.parameters(), torch.empty(0)).device  # a counted model has none
        texts = [encode(t, index) for t in predictions]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # little padding
        total, n_chars = 0.0, 0
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for b in range(0, len(order), int(batch_size)):
                    batch = [texts[i] for i in order[b : b + int(batch_size)]]
                    width = max(len(t) for t in batch)
                    if width == 0:
                        continue
                    target = torch.zeros(len(batch), width, dtype=torch.long)
                    mask = torch.zeros(len(batch), width, dtype=torch.bool)
                    for row, ids in enumerate(batch):
                        target[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                        mask[row, : len(ids)] = True
                    start = torch.full((len(batch), 1), start_id, dtype=torch.long)
                    inputs = torch.cat([start, target[:, :-1]], dim=1).to(device)
                    out = model(inputs)
                    logits = out[0] if isinstance(out, tuple) else out
                    logp = torch.log_softmax(logits.double(), dim=-1)
                    nll = -logp.gather(-1, target.to(device)[..., None])[..., 0]
                    total += float(nll[mask.to(device)].sum())
                    n_chars += int(mask.sum())
        finally:
            model.train(was_training)
        nll_per_char = total / n_chars if n_chars else float("nan")
        return {"nll_per_char": nll_per_char, "bits_per_char": nll_per_char / math.log(2),
                "n_chars": n_chars}
