"""Plumbing shared by every service of the cinema billing suite.

Services import this package and never each other: event contracts, money, auth, the database
layer, messaging (outbox, inbox, consumers) and observability live here.
"""
