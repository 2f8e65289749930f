"""Go-live readiness: every link from a municipality's card to a logged-in user, checked before go-live.

``broker readiness`` runs these checks; the status page shows the offline ones.
"""
