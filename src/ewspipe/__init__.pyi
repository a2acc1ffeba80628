# The public API's types; __init__.py loads the same names lazily on first access.
from ewspipe.catalog.spec import ModelSpec as ModelSpec
from ewspipe.library import BacktestResult as BacktestResult
from ewspipe.library import Evaluation as Evaluation
from ewspipe.library import backtest as backtest
from ewspipe.library import backtest_forecasts as backtest_forecasts
from ewspipe.library import forecast as forecast
from ewspipe.library import load_panel as load_panel
from ewspipe.models.forecast import Forecast as Forecast
from ewspipe.panel.schema import Panel as Panel
from ewspipe.settings import load_settings as load_settings
from ewspipe.starter import init_workspace as init_workspace
from ewspipe.workspace import Workspace as Workspace

__version__: str
__all__: list[str]
