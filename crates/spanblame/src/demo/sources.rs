//! The demo repository's source files, as each version has them.

pub(super) const PROMOTIONS_V1: &str = r#""""Promotions: discounts applied to a cart before it is priced."""
from checkout import db


def apply_promotions(cart, codes):
    promotions = db.load_promotions(codes)
    for promotion in promotions:
        cart = promotion.apply(cart)
    return cart


def describe(promotion):
    return f"{promotion.code}: {promotion.percent}% off"
"#;

pub(super) const PROMOTIONS_SLOW: &str = r#""""Promotions: discounts applied to a cart before it is priced."""
from checkout import db


def apply_promotions(cart, codes):
    promotions = db.load_promotions(codes)
    for promotion in promotions:
        if promotion.first_order_only:
            # A first-order promotion must not apply to items the customer bought before.
            for item in cart.items:
                if db.order_history(cart.customer_id, item.sku):
                    break
            else:
                cart = promotion.apply(cart)
            continue
        cart = promotion.apply(cart)
    return cart


def describe(promotion):
    return f"{promotion.code}: {promotion.percent}% off"
"#;

pub(super) const CART_V1: &str = r#""""The cart service's HTTP handlers."""
from checkout import promotions, clients


def checkout(request):
    cart = request.cart
    cart = promotions.apply_promotions(cart, request.promotion_codes)
    quote = clients.pricing.quote(cart)
    clients.inventory.reserve(cart.items)
    return {"total": quote.total, "currency": quote.currency}
"#;

pub(super) const QUOTE_V1: &str = r#""""Pricing: quotes for carts."""
from pricing import db


def quote(cart):
    prices = db.select_prices([item.sku for item in cart.items])
    return sum(prices[item.sku] * item.quantity for item in cart.items)
"#;

pub(super) const STOCK_V1: &str = r#""""Inventory: stock levels and reservations."""
from inventory import db


def stock(sku):
    return db.select_stock(sku)


def reserve(items):
    for item in items:
        db.update_stock(item.sku, -item.quantity)
"#;

pub(super) const STOREFRONT_V1: &str = r#""""The storefront: product pages and the checkout button."""
from storefront import clients


def product(request, product_id):
    return {"stock": clients.inventory.stock(product_id)}


def checkout(request):
    return clients.checkout.checkout(request.cart)
"#;
