// First-run setup (the first account, an admin) and login (docs/api.md §4).
import { api, get } from '../api.js';
import { t } from '../i18n.js';
import { h, replace } from '../dom.js';
import { signedIn } from '../app.js';

function input(id, label, attrs) {
  return h('label', { for: id }, label, h('input', { id, name: id, required: true, ...attrs }));
}

export async function setup(ctx) {
  const status = await get('/auth/status');
  if (!status.setup_required) { ctx.navigate('/ui/login', true); return; }
  const msg = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'form', id: 'setup-form', onsubmit: async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const submit = form.querySelector('button');
    submit.disabled = true;
    try {
      const r = await api('POST', '/auth/setup', {
        username: f.get('username'), email: f.get('email'), password: f.get('password'),
        full_name: f.get('full_name') || undefined,
      });
      await signedIn(r.tokens, r.user);
    } catch (err) { msg.textContent = err.message; submit.disabled = false; }
  } },
  h('p', null, t('No account exists yet. Create the administrator account.')),
  input('username', t('Username'), { autocomplete: 'username', minLength: 3, maxLength: 50, pattern: '[A-Za-z][A-Za-z0-9_\\-]*' }),
  input('email', t('E-mail'), { type: 'email', autocomplete: 'email', maxLength: 100 }),
  h('label', { for: 'full_name' }, t('Full name (optional)'), h('input', { id: 'full_name', name: 'full_name', maxLength: 100 })),
  input('password', t('Password'), { type: 'password', autocomplete: 'new-password', minLength: 8 }),
  h('p', { class: 'small muted' }, t('8–72 characters with an upper-case letter, a lower-case letter and a digit.')),
  msg, h('button', { class: 'primary', type: 'submit' }, t('Create administrator')));
  replace(ctx.main, h('div', { class: 'card centered' }, h('h1', null, t('Set up kaiser')), form));
  form.querySelector('input').focus();
}

export async function login(ctx) {
  try {
    const status = await get('/auth/status');
    if (status.setup_required) { ctx.navigate('/ui/setup', true); return; }
  } catch { /* the login itself will tell */ }
  const msg = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'form', id: 'login-form', onsubmit: async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const submit = form.querySelector('button');
    submit.disabled = true;
    try {
      const r = await api('POST', '/auth/login', {
        username: f.get('username'), password: f.get('password'), remember_me: f.get('remember') === 'on',
      });
      await signedIn(r.tokens, r.user);
    } catch (err) {
      msg.textContent = err.code === 'INVALID_CREDENTIALS' ? t('Wrong username or password.') : err.message;
      submit.disabled = false;
    }
  } },
  input('username', t('Username or e-mail'), { autocomplete: 'username', maxLength: 100 }),
  input('password', t('Password'), { type: 'password', autocomplete: 'current-password', maxLength: 128 }),
  h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'remember', id: 'remember' }), t('Stay signed in for 7 days')),
  msg, h('button', { class: 'primary', type: 'submit' }, t('Log in')));
  replace(ctx.main, h('div', { class: 'card centered' }, h('h1', null, t('Log in')), form));
  form.querySelector('input').focus();
}
