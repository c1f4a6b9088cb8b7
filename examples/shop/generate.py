"""Regenerate the demo shop's static pages from products.json.

The pages are checked in under site/ so the shop is plain static HTML; run this
after editing products.json:  python examples/shop/generate.py
"""

from __future__ import annotations

import html
import json
from pathlib import Path

HERE = Path(__file__).parent
SITE = HERE / "site"
PER_PAGE = 6
SHOP_NAME = "The Curious Cauldron"


def layout(title: str, body: str) -> str:
    # Header, navigation and footer repeat on every page on purpose: a good
    # extractor keeps only the main content.
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)} | {SHOP_NAME}</title>
<meta name="description" content="{html.escape(title)} at {SHOP_NAME}, purveyors of curious goods.">
<link rel="stylesheet" href="/style.css">
</head>
<body>
<header class="site-header">
  <a class="logo" href="/">{SHOP_NAME}</a>
  <nav><a href="/">Home</a> <a href="/products">All products</a> <a href="/about">About us</a> <a href="/cart">Cart (0)</a></nav>
</header>
<main>
{body}
</main>
<footer class="site-footer">
  <p>Free shipping on orders over $50. Returns accepted within 30 days.</p>
  <p>&copy; 2026 {SHOP_NAME}. All rights reserved. <a href="/privacy">Privacy</a> <a href="/terms">Terms</a></p>
</footer>
</body>
</html>
"""


def product_page(product: dict, products: list[dict]) -> str:
    esc = html.escape
    facts = "\n".join(
        f"    <tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in product["facts"].items()
    )
    reviews = "\n".join(
        f'  <div class="review"><p class="stars">{"★" * stars}{"☆" * (5 - stars)} ({stars} out of 5)</p>'
        f'<p>{esc(text)}</p><p class="reviewer">Reviewed by {esc(name)}</p></div>'
        for name, stars, text in product["reviews"]
    )
    average = sum(r[1] for r in product["reviews"]) / len(product["reviews"])
    related = [p for p in products if p["category"] == product["category"] and p is not product][:3]
    related_links = "".join(
        f'<li><a href="/products/{p["slug"]}">{esc(p["name"])}</a></li>' for p in related
    )
    body = f"""<p class="breadcrumb"><a href="/">Home</a> / <a href="/products">Products</a> / {esc(product["category"])}</p>
<article class="product">
  <h1>{esc(product["name"])}</h1>
  <p class="price">Price: {esc(product["price"])}</p>
  <p class="summary">{esc(product["summary"])}</p>
  <h2>Description</h2>
  <p>{esc(product["description"])}</p>
  <h2>Product details</h2>
  <table class="facts">
    <tr><th>Category</th><td>{esc(product["category"])}</td></tr>
    <tr><th>Price</th><td>{esc(product["price"])}</td></tr>
{facts}
  </table>
  <h2>Customer reviews</h2>
  <p>Average rating: {average:.1f} out of 5 from {len(product["reviews"])} reviews.</p>
{reviews}
</article>
<aside class="related"><h3>You may also like</h3><ul>{related_links}</ul></aside>"""
    return layout(product["name"], body)


def listing_page(page: int, pages: int, items: list[dict]) -> str:
    esc = html.escape
    cards = "\n".join(
        f'  <li class="card"><a href="/products/{p["slug"]}">{esc(p["name"])}</a> '
        f'<span class="price">{esc(p["price"])}</span><p>{esc(p["summary"])}</p></li>'
        for p in items
    )
    links = []
    if page > 1:
        links.append(f'<a rel="prev" href="{listing_url(page - 1)}">Previous page</a>')
    links.extend(
        f'<a href="{listing_url(n)}">{n}</a>' if n != page else f"<strong>{n}</strong>"
        for n in range(1, pages + 1)
    )
    if page < pages:
        links.append(f'<a rel="next" href="{listing_url(page + 1)}">Next page</a>')
    body = f"""<h1>All products, page {page} of {pages}</h1>
<ul class="products">
{cards}
</ul>
<nav class="pagination">{" ".join(links)}</nav>"""
    return layout(f"All products (page {page})", body)


def listing_url(page: int) -> str:
    return "/products" if page == 1 else f"/products/page/{page}"


def home_page(products: list[dict]) -> str:
    categories = sorted({p["category"] for p in products})
    body = f"""<h1>Welcome to {SHOP_NAME}</h1>
<p>We sell {len(products)} curious goods for adventurers, alchemists and dreamers, in {len(categories)} categories: {html.escape(", ".join(categories))}.</p>
<p><a href="/products">Browse all products</a></p>"""
    return layout("Home", body)


def about_page() -> str:
    body = f"""<h1>About {SHOP_NAME}</h1>
<p>{SHOP_NAME} was founded in 2019 by the alchemist Agnes Thornbury in a converted lighthouse in Cornwall.
Our workshop employs eleven makers, and every order is packed by hand in recyclable paper.</p>
<p>Customer service is open Monday to Friday, 9:00 to 17:00, at help@curious-cauldron.example.</p>"""
    return layout("About us", body)


def plain_page(title: str, paragraph: str) -> str:
    return layout(title, f"<h1>{html.escape(title)}</h1>\n<p>{html.escape(paragraph)}</p>")


def write(relative: str, text: str) -> None:
    path = SITE / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def main() -> None:
    products = json.loads((HERE / "products.json").read_text(encoding="utf-8"))
    pages = (len(products) + PER_PAGE - 1) // PER_PAGE
    write("index.html", home_page(products))
    write("about.html", about_page())
    write("cart.html", plain_page("Your cart", "Your cart is empty."))
    write(
        "privacy.html",
        plain_page("Privacy", "We store your address only to ship your order, and never sell it."),
    )
    write(
        "terms.html",
        plain_page("Terms", "Prices include VAT. Orders ship within two working days."),
    )
    for page in range(1, pages + 1):
        items = products[(page - 1) * PER_PAGE : page * PER_PAGE]
        target = "products.html" if page == 1 else f"products/page/{page}.html"
        write(target, listing_page(page, pages, items))
    for product in products:
        write(f"products/{product['slug']}.html", product_page(product, products))
    write("robots.txt", "User-agent: *\nDisallow: /cart\n")
    write(
        "style.css",
        "body{font-family:sans-serif;max-width:60rem;margin:auto}.price{font-weight:bold}\n",
    )
    print(f"wrote {len(products)} product pages and {pages} listing pages to {SITE}")


if __name__ == "__main__":
    main()
