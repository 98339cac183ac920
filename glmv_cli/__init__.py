"""glmv: train vision-language reasoning models the GLM-4.1V-Thinking / GLM-4.5V way."""

__version__ = "0.1.0"
