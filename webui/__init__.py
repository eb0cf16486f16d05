"""The Gradio UI. It builds forms from the job spec, calls core, and draws charts; it holds no training logic."""
