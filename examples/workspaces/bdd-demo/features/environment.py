"""behave hooks: a fresh application for every scenario."""

from app import App


def before_scenario(context, scenario):
    context.app = App()
