"""The walking skeleton: acquire and validate a raw-text corpus and a chat dataset, continue pre-training the base
model on the corpus, then fine-tune the result on the chat data. Every stage measures held-out loss before and after.

Run it locally (offline, built-in tiny model):
    pyflyte run orchestration/src/llmft/orchestration/skeleton.py skeleton
"""

from __future__ import annotations

from typing import NamedTuple

from flytekit import workflow
from flytekit.core.workflow import WorkflowBase
from flytekit.types.directory import FlyteDirectory

from llmft.data.tasks import acquire_chat, acquire_raw_text, prepare_chat, prepare_raw_text
from llmft.flyte.training import training_node
from llmft.orchestration.defaults import CHAT, CORPUS, CPT, SFT
from llmft.orchestration.summary import loss_summary
from llmft.proto.data.v1.dataset_pb2 import DatasetManifest, DatasetRequest
from llmft.proto.training.v1.training_pb2 import ModelArtifact, TrainingRequest
from llmft.train_cpt.tasks import train as train_cpt
from llmft.train_sft.tasks import train as train_sft


class SkeletonOutputs(NamedTuple):
    corpus: DatasetManifest
    chat: DatasetManifest
    cpt: ModelArtifact
    sft: ModelArtifact
    model: FlyteDirectory
    summary: str


def skeleton_workflow(
    corpus: DatasetRequest, chat: DatasetRequest, cpt: TrainingRequest, sft: TrainingRequest
) -> WorkflowBase:
    """The skeleton with its requests bound in as constants (pyflyte's command line cannot take protobuf inputs;
    tests bind smaller requests)."""

    @workflow
    def skeleton() -> SkeletonOutputs:
        corpus_rows = acquire_raw_text(request=corpus)
        corpus_data = prepare_raw_text(
            config=corpus_rows.config, rows=corpus_rows.rows, acquisition=corpus_rows.acquisition
        )
        chat_rows = acquire_chat(request=chat)
        chat_data = prepare_chat(config=chat_rows.config, rows=chat_rows.rows, acquisition=chat_rows.acquisition)
        cpt_model = training_node(train_cpt, cpt)(request=cpt, dataset=corpus_data.manifest, data=corpus_data.data)
        sft_model = training_node(train_sft, sft)(
            request=sft, dataset=chat_data.manifest, data=chat_data.data, base_model=cpt_model.model
        )
        return SkeletonOutputs(
            corpus=corpus_data.manifest,
            chat=chat_data.manifest,
            cpt=cpt_model.artifact,
            sft=sft_model.artifact,
            model=sft_model.model,
            summary=loss_summary(names=["CPT", "SFT"], artifacts=[cpt_model.artifact, sft_model.artifact]),
        )

    return skeleton


skeleton = skeleton_workflow(CORPUS, CHAT, CPT, SFT)
