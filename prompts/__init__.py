"""Versioned prompt templates, as data (YAML + Jinja2), and the code that loads and renders them.

Each template lives at ``prompts/<name>/v<version>.yaml``. A published version is never edited:
changing a prompt means adding ``v<version+1>.yaml``.
"""

from prompts.loader import Decoding, JudgeRubric, Message, PromptTemplate, list_prompts, load_prompt, load_rubric

__all__ = ["Decoding", "JudgeRubric", "Message", "PromptTemplate", "list_prompts", "load_prompt", "load_rubric"]
