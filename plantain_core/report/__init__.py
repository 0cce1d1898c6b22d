"""The run's card (README.md) and figures, written from summary.json's numbers.

``card.render_card`` renders the card; ``figures.write_figures`` the PNGs it links.
matplotlib is imported only inside the figure functions.
"""
