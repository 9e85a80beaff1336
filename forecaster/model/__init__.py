"""One Prophet model per series: from a history to a forecast frame with a calibrated band.

    options.py        ModelOptions (config key ``model``) and FitSpec: what a fit is asked to do
    frame.py          Frame: the forecast served, stored and scored; the frame's times
    cleaning.py       the step grid, the log transform, clipped spikes, safe bounds, pinned edges
    seasonality.py    which seasonalities a series gets (weekly only when it repeats), Prophet's options
    stan_json.py      a faster writer for the JSON files Stan reads its data and initial values from
    stan_design.py    what Prophet's fit hands Stan, built with numpy; the curves its parameters describe
    exact_map.py      Prophet's MAP fit of an additive model solved exactly on those arrays, with numpy
    stan_optimize.py  the fit on those arrays: exact_map's answer, or Prophet's Stan model run as its backend runs it
    prophet.py        driving Prophet: the fit (warm-started, lean where it can be), its curves read back
    trend.py          how the trend continues past the history, how it was known at each past point, how its rate varied
    combination.py    the weights on the simplex whose mix of candidate forecasts erred least
    competitors.py    the simple forecasts Prophet competes with: the recent level, the series a day or a week earlier
    correction.py     per lead time, the residual carried forward and the competitor that takes over
    band.py           the band's quantiles from past errors, checked by replaying them on the history; spreads added
    fit.py            fit_predict: the stages above in order, for one series

The defaults make a forecast with only ``name`` and ``query`` worth looking
at: spikes are clipped, heavy tails are fitted in log space, seasonalities
are chosen from the history, the trend is held flat unless it has kept one
slope all along, where the series is now is carried forward where that would
have helped, and the band is the quantiles of the errors this predictor would
have made from each past point with only what was known there.

This package imports nothing at import time; ``options`` needs no numeric
code, so the config layer can validate ``model:`` without loading numpy.
"""
