"""Built-in backend plugins: the reference tiny decoder (``tinylm``) and Hugging Face models (``hf``)."""
