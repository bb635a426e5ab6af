"""llmft.serve: answering with a fine-tuned model. A gRPC inference service (unary and server-streaming generation,
model info, standard health checks and reflection) and batch inference over a prompt dataset split into shards.
Inputs: a model folder (Hugging Face format, merged weights or a LoRA adapter) and GenerateRequest or
BatchInferenceRequest messages; outputs: GenerateResponse / GenerateStreamResponse messages, or answers as Parquet with
a BatchInferenceResult."""

__version__ = "0.2.0"
STAGE = "llmft.serve"
