"""Built-in adaptation methods: the zero-shot anchor, LoRA, LM-only LoRA and full fine-tuning."""
