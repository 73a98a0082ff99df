"""Judge NLL: mean negative log-likelihood per token of texts under a causal language model.

A local Hugging Face ``evaluate`` metric (loaded offline from this folder); the judge model
and its tokenizer are passed to ``compute`` (``model``, ``tokenizer``), so nothing is
downloaded. Each text is tokenised without special tokens and read after one start token
(``start_token_id``; default the tokenizer's BOS, else its EOS, the usual document
separator), so its first token is scored too. Batches are right-padded with an attention
mask; padded positions are never scored. Results are pooled over tokens:

    mean_nll = sum of token NLLs / number of scored tokens      (nats per token)
    perplexity = exp(mean_nll)

``nll_per_char`` divides the same sum by the number of characters instead, which does not
depend on the tokenizer (shuffled text splits into more tokens). Lower is better.
Keep one import per line: evaluate's import scanner reads lines naively.
"""

import math

import datasets
import evaluate
import torch

_DESCRIPTION = "Mean NLL per token and perplexity of texts under a given causal language model."

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): the texts.
    model: a causal LM (transformers' ``AutoModelForCausalLM``: ``model(input_ids=...,
        attention_mask=...).logits`` of shape (B, T, vocab)).
    tokenizer: its tokenizer (``tokenizer(texts, add_special_tokens=False)["input_ids"]``).
    batch_size (int, optional): texts per forward pass, default 32.
    start_token_id (int, optional): the token read before each text (default BOS, else EOS).
    max_length (int, optional): truncate each text's tokens to this many, default None.
    autocast_dtype (torch.dtype, optional): run the model's forward pass under
        ``torch.autocast`` with this dtype (e.g. torch.bfloat16; the log-softmax stays
        float32), default None (the model's own dtype).
Returns:
    "mean_nll", "perplexity", "nll_per_char" (floats), "n_tokens", "n_chars" (ints).
"""


def start_token(tokenizer, start_token_id):
    """The start token id: the given one, else BOS, else EOS; a ValueError if none."""
    for candidate in (start_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    raise ValueError("the tokenizer has no BOS or EOS token: pass start_token_id")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class JudgeNll(evaluate.Metric):
    """NLL per token and perplexity under a causal language model."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions, model=None, tokenizer=None, batch_size=32,
                 start_token_id=None, max_length=None, autocast_dtype=None):
        if model is None or tokenizer is None:
            raise ValueError("judge_nll needs model=<causal LM> and tokenizer=<its tokenizer>")
        start = start_token(tokenizer, start_token_id)
        texts = list(predictions)
        encoded = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        if max_length is not None:
            encoded = [ids[: int(max_length)] for ids in encoded]
        device = next(model.parameters()).device
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # little padding
        total, n_tokens = 0.0, 0
        with torch.no_grad():
            for b in range(0, len(order), int(batch_size)):
                batch = [[start] + list(encoded[i]) for i in order[b : b + int(batch_size)]]
                width = max(len(ids) for ids in batch)
                if width < 2:
                    continue  # only empty texts: nothing to score
                ids = torch.zeros(len(batch), width, dtype=torch.long)
                mask = torch.zeros(len(batch), width, dtype=torch.long)
                for row, seq in enumerate(batch):
                    ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
                    mask[row, : len(seq)] = 1
                ids, mask = ids.to(device), mask.to(device)
                with torch.autocast(device.type, dtype=autocast_dtype,
                                    enabled=autocast_dtype is not None):
                    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
                logp = torch.log_softmax(logits.float(), dim=-1)
                nll = -logp.gather(-1, ids[:, 1:, None])[..., 0]
                scored = mask[:, 1:].bool()
                total += float(nll[scored].double().sum())
                n_tokens += int(scored.sum())
        n_chars = sum(len(t) for t in texts)
        mean_nll = total / n_tokens if n_tokens else float("nan")
        perplexity = math.exp(min(mean_nll, 709.0)) if n_tokens else math.nan  # no overflow
        return {"mean_nll": mean_nll, "perplexity": perplexity,
                "nll_per_char": total / n_chars if n_chars else float("nan"),
                "n_tokens": n_tokens, "n_chars": n_chars}
