"""Built-in backend plugins: the reference tiny decoder (``tinylm``), Hugging Face models (``hf``), ONNX Runtime
(``onnx``) and llama.cpp (``gguf``); the last two import their runtime only when a model loads."""
