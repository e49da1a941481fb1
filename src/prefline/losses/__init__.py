"""Loss functions: pure tensor functions, registered by name.

``reward.py`` holds the reward-model losses (Bradley-Terry, ties, Plackett-Luce, ratings);
``policy.py`` the DPO family and KTO. Each module's ``LOSSES`` dict maps a name to its
function; configs name a loss and are checked against that dict.
"""
