// Entry point: the staff sign-in (email + password + TOTP), then the sections.

import { ApiError, can, currentSession, loadSession, login, setSignedOutHandler, signOut } from './api.js';
import { showAnalytics } from './analytics.js';
import { showAudit } from './audit.js';
import { showFleet } from './fleet.js';
import { showPricing } from './pricing.js';

const VIEWS = { pricing: showPricing, analytics: showAnalytics, fleet: showFleet, audit: showAudit };
const $ = (id) => document.getElementById(id);

function showLogin(message) {
  for (const name of Object.keys(VIEWS)) $(`view-${name}`).hidden = true;
  $('nav').hidden = true;
  $('who').hidden = true;
  $('role-banner').hidden = true;
  $('login-view').hidden = false;
  $('login-error').textContent = message || '';
  document.title = 'Voltway admin · Sign in';
  $('login-email').focus();
}

function roleBanner() {
  const s = currentSession();
  const banner = $('role-banner');
  if (!can('pricing_write') && !can('fleet_write')) {
    banner.textContent = `Signed in as ${s.roles.join(', ')}: everything is read-only for you.`;
    banner.hidden = false;
  } else banner.hidden = true;
}

async function route() {
  if (!currentSession()) return;
  const name = (location.hash || '#pricing').slice(1).split('?')[0];
  const view = VIEWS[name] ? name : 'pricing';
  for (const n of Object.keys(VIEWS)) $(`view-${n}`).hidden = n !== view;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.view === view) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `Voltway admin · ${document.querySelector(`#nav a[data-view="${view}"]`).textContent}`;
  await VIEWS[view]($(`view-${view}`));
}

function showApp() {
  const s = currentSession();
  $('login-view').hidden = true;
  $('nav').hidden = false;
  $('who').hidden = false;
  $('who-email').textContent = s.email;
  $('who-roles').textContent = s.roles.join(', ');
  roleBanner();
  route();
}

function loginErrors() {
  const errors = [];
  const email = $('login-email');
  const password = $('login-password');
  const code = $('login-totp');
  for (const el of [email, password, code]) el.removeAttribute('aria-invalid');
  if (!email.value.includes('@')) errors.push([email, 'Enter your email address.']);
  if (!password.value) errors.push([password, 'Enter your password.']);
  if (!/^[0-9]{6}$/.test(code.value.trim())) errors.push([code, 'Enter the 6-digit code from your authenticator app.']);
  for (const [el] of errors) el.setAttribute('aria-invalid', 'true');
  return errors;
}

async function onLogin(ev) {
  ev.preventDefault();
  const errors = loginErrors();
  if (errors.length) {
    $('login-error').textContent = errors.map(([, m]) => m).join(' ');
    errors[0][0].focus();
    return;
  }
  const button = $('login-submit');
  button.disabled = true;
  $('login-error').textContent = '';
  try {
    await login($('login-email').value.trim(), $('login-password').value, $('login-totp').value.trim());
    $('login-password').value = '';
    $('login-totp').value = '';
    if (!location.hash) history.replaceState(null, '', '#pricing');
    showApp();
    $('main').focus();
  } catch (err) {
    let message = 'Sign-in failed. Try again.';
    if (err instanceof ApiError) {
      if (err.status === 401) message = 'Email, password or code is wrong.';
      else if (err.status === 429) message = `Too many attempts. Try again in ${err.retryAfter || 'a few'} seconds.`;
      else if (err.status === 422) message = 'Check the email and the 6-digit code.';
      else message = err.message;
    }
    $('login-error').textContent = message;
    $('login-totp').value = '';
    $('login-totp').focus();
  } finally {
    button.disabled = false;
  }
}

// Views are built for the signed-in role: after a sign-out start from a clean page.
setSignedOutHandler((reason) => {
  sessionStorage.setItem('voltway.admin.notice', reason || '');
  location.reload();
});
$('login-form').addEventListener('submit', onLogin);
$('sign-out').addEventListener('click', () => signOut('Signed out.'));
window.addEventListener('hashchange', route);
const notice = sessionStorage.getItem('voltway.admin.notice');
sessionStorage.removeItem('voltway.admin.notice');
if (loadSession()) showApp();
else showLogin(notice);
