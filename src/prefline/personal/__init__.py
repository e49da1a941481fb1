"""Personalisation helpers above the judges and models: the two-segment disagreement set
(:mod:`prefline.personal.disagree`) that personalised reward models and policies are
tested on."""
