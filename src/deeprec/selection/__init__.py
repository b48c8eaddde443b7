"""Model selection on the user's own data: the candidates `DeepRec()` chooses among and the
bounded search that picks one on validation (see candidates.py and search.py)."""

from deeprec.selection.candidates import SEARCHED_KEYS, needs_selection
from deeprec.selection.search import SelectionReport, Trial, select

__all__ = ["SEARCHED_KEYS", "SelectionReport", "Trial", "needs_selection", "select"]
