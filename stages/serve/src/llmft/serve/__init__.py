"""llmft.serve: answering with a fine-tuned model. A continuous-batching gRPC inference service (unary and streaming
generation, model info, standard health checks and reflection, deadlines, a bounded queue, TLS and token auth), a
Gradio chat app laid out as a Hugging Face Space, publishing of the model, its card and the Space to the Hub, and
batch inference over a prompt dataset split into content-named shards."""

__version__ = "0.7.0"
STAGE = "llmft.serve"
