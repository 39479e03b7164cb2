"""The downstream step of the seed paper (Sec. 4, Fig. 5 bottom): a model's encoder fine-tuned with CTC.

The paper adds "3 linear layers on the top" and fine-tunes "the entire network ... with CTC loss following the
official SpeechBrain recipe". That recipe (speechbrain, recipes/CommonVoice/ASR/CTC/hparams/
train_it_with_wav2vec.yaml) normalises the encoder's output (`output_norm`, no parameters), then three linear
blocks (`enc`: Linear 1024, BatchNorm1d, LeakyReLU; dropout 0.15 after the first two), then the output layer
`ctc_lin` (1024 -> vocabulary), log-softmax and CTC with the blank at index 0. Here the vocabulary is characters
(`vocab`, 32 by default) and the transcripts are random, drawn at CHARS_PER_SECOND (docs/models.md): a step's cost
does not depend on which characters they are.

Module names (the encoder's as in pretraining; fine-tuning masks nothing, so there is no mask embedding):

    feature_extractor.conv_layers.{0..6}, feature_projection, transformer.pos_conv_embed, transformer.layers.{i}
    ctc_head.blocks.{0,1,2}                the three linear blocks
    ctc_lin                                Linear(1024 -> vocab) (tiny models: 64 wide blocks)
    ctc_loss                               log-softmax and CTC
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from w2vprof.models.config import ModelConfig, frames_for_samples
from w2vprof.models.encoder import SpeechEncoderModel, build_backbone, to_device_without_waiting
from w2vprof.models.family import DEFAULT_VOCAB
from w2vprof.workload.base import SAMPLE_RATE

__all__ = [
    "CHARS_PER_SECOND",
    "DEFAULT_VOCAB",
    "HEAD_BLOCKS",
    "CtcModel",
    "CtcOutput",
    "Transcripts",
    "draw_transcripts",
]

#: Characters (word boundaries included) per second of read speech: LibriSpeech dev-clean and test-clean hold
#: 288,456 + 281,530 characters (ESPnet's scoring counts, egs2/librispeech_100/asr1/README.md) in 5.4 + 5.4 hours
#: (Panayotov et al. 2015, Table 1): 569,986 / 38,880 s = 14.66. docs/models.md.
CHARS_PER_SECOND = 14.7
#: SpeechBrain's recipe: dropout 0.15, three blocks (their width, dnn_neurons 1024, is ModelConfig.ctc_neurons).
HEAD_DROPOUT = 0.15
HEAD_BLOCKS = 3


@dataclass
class Transcripts:
    """A batch's CTC targets."""

    labels: Tensor  # (B, S) int64 on the batch's device: characters 1..vocab-1, then blanks (0) past each length
    lengths: Tensor  # (B,) int64 on the CPU: torch's ctc_loss reads the lengths on the host


@dataclass
class CtcOutput:
    loss: Tensor  # CTC per target character, averaged over the utterances (torch's reduction="mean")
    num_frames: int  # real (unpadded) frames in the batch
    num_utterances: int
    num_characters: int


def draw_transcripts(
    sample_lengths: Union[np.ndarray, Sequence[int]],
    conv_layers: tuple[tuple[int, int, int], ...],
    vocab: int,
    device: torch.device,
    generator: Optional[torch.Generator] = None,
    chars_per_second: float = CHARS_PER_SECOND,
) -> Transcripts:
    """Random transcripts for utterances of `sample_lengths`: round(seconds * chars_per_second) characters each, at
    least 1 and at most half the utterance's frames (CTC needs a frame per character and one between repeats)."""
    samples = np.asarray(sample_lengths, dtype=np.int64)
    frames = frames_for_samples(samples, conv_layers)
    wanted = np.rint(samples / SAMPLE_RATE * chars_per_second).astype(np.int64)
    chars = np.clip(wanted, 1, np.maximum(frames // 2, 1))
    labels = torch.randint(1, vocab, (len(chars), int(chars.max())), generator=generator)
    past_end = torch.arange(labels.shape[1])[None, :] >= torch.from_numpy(chars)[:, None]
    return Transcripts(to_device_without_waiting(labels.masked_fill(past_end, 0), device), torch.from_numpy(chars))


class LinearBlock(nn.Module):
    """Linear, BatchNorm1d over every frame of the batch, LeakyReLU, dropout (SpeechBrain's linear, bn, activation,
    drop)."""

    def __init__(self, in_features: int, out_features: int, dropout: float) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.norm = nn.BatchNorm1d(out_features)
        self.activation = nn.LeakyReLU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        y = self.linear(x)
        y = self.norm(y.reshape(-1, y.shape[-1])).view_as(y)
        return self.dropout(self.activation(y))


class CtcHead(nn.Module):
    def __init__(self, in_features: int, neurons: int) -> None:
        super().__init__()
        sizes = [in_features] + [neurons] * HEAD_BLOCKS
        # the recipe has no dropout after its third block
        dropouts = [HEAD_DROPOUT] * (HEAD_BLOCKS - 1) + [0.0]
        self.blocks = nn.ModuleList(LinearBlock(i, o, d) for i, o, d in zip(sizes, sizes[1:], dropouts))

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class CtcLoss(nn.Module):
    """Log-softmax over the vocabulary (in float32) and torch's CTC, blank 0, impossible alignments zeroed
    (SpeechBrain's ctc_loss)."""

    def forward(self, logits: Tensor, frame_lengths: Tensor, targets: Transcripts) -> Tensor:
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # (T, B, V)
        return nn.functional.ctc_loss(
            log_probs, targets.labels, frame_lengths, targets.lengths, blank=0, reduction="mean", zero_infinity=True
        )


class CtcModel(SpeechEncoderModel):
    def __init__(self, config: ModelConfig, vocab: int = DEFAULT_VOCAB) -> None:
        super().__init__()
        if vocab < 2:
            raise ValueError(f"a CTC vocabulary needs the blank and at least one character, got {vocab}")
        self.config = config
        self.vocab = vocab
        backbone = build_backbone(config)
        self.feature_extractor = backbone.feature_extractor
        self.feature_projection = backbone.encoder.feature_projection
        self.transformer = backbone.encoder.transformer
        self.ctc_head = CtcHead(config.embed_dim, config.ctc_neurons)
        self.ctc_lin = nn.Linear(config.ctc_neurons, vocab)
        self.ctc_loss = CtcLoss()

    def step_schedule(self) -> None:
        """Once per optimizer update: fine-tuning has no schedule here."""

    def forward(
        self,
        waveforms: Tensor,
        lengths: Optional[Tensor] = None,
        targets: Optional[Transcripts] = None,
        inference_only: bool = False,
    ) -> CtcOutput | Tensor:
        """One fine-tuning forward pass (waveforms (B, S), lengths (B,) in samples, the batch's transcripts);
        inference_only=True stops before the loss (Table 1)."""
        features, frame_lengths, real = self._features(waveforms, lengths)
        x = self.feature_projection(features)
        x = x * real.unsqueeze(-1).to(x.dtype)  # padded frames carry nothing
        context = self._encode(x, real, bool((frame_lengths < x.shape[1]).any()))
        context = nn.functional.layer_norm(context, context.shape[-1:])  # SpeechBrain's output_norm
        logits = self.ctc_lin(self.ctc_head(context))
        if inference_only:
            return logits.sum()
        if targets is None:
            raise ValueError("CTC needs the batch's transcripts (draw_transcripts)")
        loss = self.ctc_loss(logits, torch.from_numpy(frame_lengths), targets)
        return CtcOutput(
            loss=loss,
            num_frames=int(frame_lengths.sum()),
            num_utterances=len(frame_lengths),
            num_characters=int(targets.lengths.sum()),
        )
