"""cnilib: what every plugin of the suite shares.

This package root deliberately imports nothing: a plugin process pays only for the
modules its verb needs (see README, "Start-up budget").
"""

