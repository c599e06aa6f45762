"""Widgets of our own, where Textual's would cost too much per keypress."""
