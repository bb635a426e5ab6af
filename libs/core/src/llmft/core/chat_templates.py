"""Chat templates of the model families llmft trains, in each family's own format, with `{% generation %}` markers
around what the assistant says, so assistant-only loss (trl, `return_assistant_tokens_mask`) can tell its tokens
apart. Real Hub tokenizers ship templates without the markers (LLaMA-2/3 chat) or none at all (RedPajama-INCITE): a
request names one of these (`TrainingRecipe.chat_template`) or supplies its own Jinja, and `apply_chat_template` puts
it on the tokenizer, which is then saved with the model, so every later stage and the server render chats the same.
A tokenizer that ships a known family's template without markers (SmolLM2-Instruct's) gets that family's template with
them, once a check shows that both render the same tokens: the model keeps its own format, and nothing falls back to
another family's.

Each template puts the end-of-turn token inside the assistant's span: the model must learn to stop. Rendering a
conversation without its last answer with `add_generation_prompt=True` gives a prefix of the whole conversation, so
serving prompts the model exactly as training showed it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmft.core.errors import RecipeError

GENERATION_MARKER = "{% generation %}"


@dataclass(frozen=True)
class ChatFormat:
    """A family's chat format: its template and the special tokens the template needs as single tokens."""

    template: str
    # Literal special tokens; "bos_token" and "eos_token" name the tokenizer's own.
    needs: tuple[str, ...]
    description: str


# ChatML (Qwen, many instruction-tuned models, and llmft's presets): <|im_start|>role\n...<|im_end|>\n
CHATML = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{%- generation -%}{{ message['content'] + '<|im_end|>' }}{%- endgeneration -%}"
    "{{ '\\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

# Llama-2 chat: <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {answer} </s><s>[INST] {user} [/INST] ...
# Meta's format has no role but user and assistant turns in alternation, after an optional system message.
LLAMA_2 = (
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set system_message = messages[0]['content'] -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set system_message = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Llama-2 chat alternates user and assistant turns, starting with the user') }}"
    "{%- endif -%}"
    "{%- if message['role'] == 'user' -%}"
    "{%- if loop.index0 == 0 and system_message -%}"
    "{{ bos_token + '[INST] <<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' "
    "+ message['content'] | trim + ' [/INST]' }}"
    "{%- else -%}"
    "{{ bos_token + '[INST] ' + message['content'] | trim + ' [/INST]' }}"
    "{%- endif -%}"
    "{%- else -%}"
    "{%- generation -%}{{ ' ' + message['content'] | trim + ' ' + eos_token }}{%- endgeneration -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
)

# Llama-3 instruct: <|begin_of_text|><|start_header_id|>role<|end_header_id|>\n\n{content}<|eot_id|>...
LLAMA_3 = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['role'] == 'assistant' -%}"
    "{%- generation -%}{{ message['content'] | trim + '<|eot_id|>' }}{%- endgeneration -%}"
    "{%- else -%}"
    "{{ message['content'] | trim + '<|eot_id|>' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif -%}"
)

# RedPajama-INCITE chat: <human>: {question}\n<bot>: {answer}\n. The answer ends with the end-of-text token, so a
# fine-tuned model stops by itself (the released chat model relies on a "<human>:" stop string instead).
REDPAJAMA_INCITE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<bot>:' }}"
    "{%- generation -%}{{ ' ' + message['content'] + eos_token }}{%- endgeneration -%}"
    "{{ '\\n' }}"
    "{%- elif message['role'] == 'user' -%}"
    "{{ '<human>: ' + message['content'] + '\\n' }}"
    "{%- else -%}"
    "{{ message['content'] + '\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<bot>:' }}{%- endif -%}"
)

# SmolLM2-Instruct (HuggingFaceTB): ChatML that opens with a default system turn when the chat has none. Its tokenizer
# ships SMOLLM2_SHIPPED, without markers; SMOLLM2 is the same template with them, and renders the same tokens
# (`shipped_with_markers` checks that whenever it stands in for the shipped one).
SMOLLM2_SHIPPED = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

FORMATS: dict[str, ChatFormat] = {
    "chatml": ChatFormat(CHATML, ("<|im_start|>", "<|im_end|>"), "ChatML (Qwen, llmft presets)"),
    "llama-2": ChatFormat(LLAMA_2, ("bos_token", "eos_token"), "Llama-2 chat ([INST] ... [/INST])"),
    "llama-3": ChatFormat(
        LLAMA_3, ("bos_token", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), "Llama-3 instruct"
    ),
    "redpajama-incite": ChatFormat(REDPAJAMA_INCITE, ("eos_token",), "RedPajama-INCITE chat (<human>: / <bot>:)"),
    "smollm2": ChatFormat(SMOLLM2, ("<|im_start|>", "<|im_end|>"), "SmolLM2-Instruct (ChatML, default system turn)"),
}

# Templates that tokenizers ship without {% generation %} markers -> the shipped format that is the same template with
# them. A tokenizer carrying one of these gets the marked one (checked token by token), and the artifact names it.
SHIPPED_WITHOUT_MARKERS: dict[str, str] = {SMOLLM2_SHIPPED: "smollm2"}

# Conversations on which a marked template must render exactly the tokens of the template it stands in for: with and
# without a system turn, one and several exchanges, ending on the user (a prompt) or on the assistant.
PROBE_CONVERSATIONS: tuple[tuple[dict[str, str], ...], ...] = (
    ({"role": "user", "content": "What is the capital of France?"},),
    (
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "2 + 2 = 4."},
    ),
    (
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Colour of the sky?"},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "And grass?\n\nThink twice."},
        {"role": "assistant", "content": " Green "},
    ),
)

# What `artifact.chat_template` says for a template the request wrote itself.
CUSTOM = "custom"


class ChatTemplateError(RecipeError):
    """A chat template that cannot be used; the message names the field and what to do."""


def has_generation_markers(template: str) -> bool:
    return "generation" in template and "endgeneration" in template


def _missing_tokens(tokenizer: Any, needs: tuple[str, ...]) -> list[str]:
    vocab = tokenizer.get_vocab()
    missing = []
    for token in needs:
        if token in ("bos_token", "eos_token"):
            if getattr(tokenizer, token, None) is None:
                missing.append(token)
        elif token not in vocab:
            missing.append(token)
    return missing


def suggest(tokenizer: Any) -> str:
    """The shipped format whose special tokens this tokenizer has, as a hint in error messages ("" when none)."""
    vocab = tokenizer.get_vocab()
    if "<|eot_id|>" in vocab and "<|start_header_id|>" in vocab:
        return "llama-3"
    if "<|im_start|>" in vocab and "<|im_end|>" in vocab:
        return "chatml"
    if getattr(tokenizer, "bos_token", None) == "<s>" and getattr(tokenizer, "eos_token", None) == "</s>":
        return "llama-2"
    if getattr(tokenizer, "eos_token", None) == "<|endoftext|>":
        return "redpajama-incite"
    return ""


OPTIONAL, REQUIRED, MARKERS = "optional", "required", "markers"


def shipped_with_markers(tokenizer: Any, model_name: str) -> str:
    """Replaces a template the tokenizer ships without markers (SHIPPED_WITHOUT_MARKERS) with the same family's
    template with markers, after checking on PROBE_CONVERSATIONS that both give the same tokens, with and without a
    generation prompt. Returns the family's name; raises ChatTemplateError (the shipped template stays) if they
    differ."""
    shipped = tokenizer.chat_template
    family = SHIPPED_WITHOUT_MARKERS[shipped]
    marked = FORMATS[family].template
    for conversation in PROBE_CONVERSATIONS:
        for prompt in (False, True):
            if prompt and conversation[-1]["role"] == "assistant":
                continue
            ids = [
                list(
                    tokenizer.apply_chat_template(
                        list(conversation),
                        chat_template=template,
                        tokenize=True,
                        add_generation_prompt=prompt,
                        return_dict=True,
                    )["input_ids"]
                )
                for template in (shipped, marked)
            ]
            if ids[0] != ids[1]:
                at = next((i for i, (a, b) in enumerate(zip(*ids, strict=False)) if a != b), min(map(len, ids)))
                raise ChatTemplateError(
                    f"base model {model_name!r}: the {family!r} template with generation markers renders other tokens "
                    f"than the template its tokenizer ships (from token {at}); set recipe.chat_template explicitly"
                )
    tokenizer.chat_template = marked
    return family


def choice_problem(choice: str) -> str:
    """What is wrong with a template choice on its own (before any tokenizer), or "" when nothing is."""
    if choice and choice not in FORMATS and "{%" not in choice and "{{" not in choice:
        return f"{choice!r} is neither a shipped template ({', '.join(sorted(FORMATS))}) nor a Jinja template"
    return ""


def apply_chat_template(tokenizer: Any, choice: str, model_name: str, *, field: str, need: str) -> str:
    """Puts the chosen template on `tokenizer` (a shipped family's name or a Jinja template) and returns what the
    artifact records: the name, "custom", or "" when `choice` is empty and the tokenizer keeps its own. `need` says what
    the caller needs of the resulting template: OPTIONAL (nothing: continued pre-training), REQUIRED (a template: chat
    data, reward models, PPO, DPO) or MARKERS (one with {% generation %} markers: assistant-only loss). Raises
    ChatTemplateError naming `field`."""
    names = ", ".join(sorted(FORMATS))
    if not choice:
        own = getattr(tokenizer, "chat_template", None) or ""
        if own in SHIPPED_WITHOUT_MARKERS:
            return shipped_with_markers(tokenizer, model_name)
        if need == OPTIONAL:
            return ""
        hint = suggest(tokenizer)
        how = (
            f"set {field} to one of {names}"
            + (f" (its special tokens look like {hint!r})" if hint else "")
            + ", or to a Jinja template with {% generation %} markers"
        )
        if not own:
            raise ChatTemplateError(f"base model {model_name!r}: its tokenizer has no chat template; {how}")
        if need == MARKERS and not has_generation_markers(own):
            raise ChatTemplateError(
                f"base model {model_name!r}: its chat template has no {{% generation %}} markers, so the "
                f"assistant's tokens cannot be told apart for assistant-only loss; {how}"
            )
        return ""
    if choice in FORMATS:
        chat_format = FORMATS[choice]
        missing = _missing_tokens(tokenizer, chat_format.needs)
        if missing:
            raise ChatTemplateError(
                f"{field}: {choice!r} needs the special tokens {missing}, which the tokenizer of {model_name!r} lacks"
                + (f"; its special tokens look like {suggest(tokenizer)!r}" if suggest(tokenizer) else "")
            )
        tokenizer.chat_template = chat_format.template
        return choice
    problem = choice_problem(choice)
    if problem:
        raise ChatTemplateError(f"{field}: {problem}")
    if need == MARKERS and not has_generation_markers(choice):
        raise ChatTemplateError(
            f"{field}: the template has no {{% generation %}} ... {{% endgeneration %}} markers around the "
            "assistant's text; assistant-only loss needs them"
        )
    from jinja2 import TemplateError

    previous = getattr(tokenizer, "chat_template", None)
    tokenizer.chat_template = choice
    try:
        tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], tokenize=False
        )
    except TemplateError as error:
        tokenizer.chat_template = previous
        raise ChatTemplateError(
            f"{field}: the template does not render a user and an assistant turn: {error}"
        ) from error
    return CUSTOM
