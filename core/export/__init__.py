"""Export a run: merge its adapter into the base, verify, and write a folder people can run.

options.py  what an export is asked to do, checked before anything launches
job.py      the export job folder (request, status, log, cancel) and starting/waiting on it
worker.py   the export process: `python -m core.export.worker JOB_FOLDER`
merge.py    merge and the logit check;  card.py  model card and loss chart
gguf.py     GGUF files with llama.cpp's converter, checked by loading them back
ollama.py   an Ollama Modelfile from the model's own chat template
"""
